"""A real Label Studio server for the ``label_studio`` tests, started by a session fixture.

Label Studio is installed into its own virtual environment (never ours), cached between
runs on the same machine in ``$ANNOSTORE_LS_VENV`` (default
``~/.cache/annostore/label-studio-venv``); an install that did not finish is redone. The
server runs on 127.0.0.1 on a free port with a fresh data folder, telemetry and update
checks off, and legacy API tokens enabled for its organization (Label Studio 1.23 turns
them off by default, and then a ``Token`` header gets 401). It is stopped at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

LABEL_STUDIO_REQUIREMENT = "label-studio>=1.20"
TOKEN = "annostoretesttoken0123456789abcdef012345"
USER = "labeler@example.com"
QUIET_ENV = {
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
    "COLLECT_ANALYTICS": "false",
    "LATEST_VERSION_CHECK": "false",
}
_COMPLETE = ".annostore-complete"


def venv_folder() -> Path:
    default = Path.home() / ".cache" / "annostore" / "label-studio-venv"
    return Path(os.environ.get("ANNOSTORE_LS_VENV", default))


def _executable() -> Path:
    return venv_folder() / "bin" / "label-studio"


def _installed() -> bool:
    return (venv_folder() / _COMPLETE).exists() and _executable().exists()


def _install() -> None:
    folder = venv_folder()
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    log = folder.parent / "label-studio-install.log"
    pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    with open(log, "wb") as out:
        for command in (
            [sys.executable, "-m", "venv", str(folder)],
            [*pip, "--upgrade", "pip"],
            [*pip, LABEL_STUDIO_REQUIREMENT],
        ):
            if subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"installing Label Studio failed: {' '.join(command)}\n{tail}")
    (folder / _COMPLETE).write_text(LABEL_STUDIO_REQUIREMENT + "\n")


_background: threading.Thread | None = None
_background_errors: list[BaseException] = []


def install_in_background() -> None:
    """Start installing Label Studio when the cache lacks it, so that the install overlaps
    the tests that run before the Label Studio ones (about 150 s on a new machine)."""
    global _background
    if _background is not None or _installed():
        return

    def work() -> None:
        try:
            _install()
        except BaseException as exc:  # handed to the fixture, which raises it
            _background_errors.append(exc)

    _background = threading.Thread(target=work, name="label-studio-install", daemon=True)
    _background.start()


def ensure_installed() -> Path:
    """The ``label-studio`` executable, installing it first when the cache lacks it."""
    if _background is not None:
        _background.join()
        if _background_errors:
            raise _background_errors[0]
    if not _installed():
        _install()
    return _executable()


class LabelStudioServer:
    """A running server: its URL, a user's token, and ``call`` to act as a labeler."""

    def __init__(self, url: str, token: str, process: subprocess.Popen, log: Path):
        self.url = url
        self.token = token
        self.process = process
        self.log = log
        self.startup_seconds = 0.0

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = response.read()
        return json.loads(payload) if payload else None

    def tasks(self, project_id: int) -> list[dict[str, Any]]:
        return self.call("GET", f"/api/tasks/?project={project_id}&page_size=1000")["tasks"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)


def _enable_legacy_tokens(database: Path) -> None:
    with sqlite3.connect(database) as db:
        organizations = [row[0] for row in db.execute("SELECT id FROM organization")]
        for organization in organizations:
            changed = db.execute(
                "UPDATE jwt_auth_jwtsettings SET legacy_api_tokens_enabled = 1 "
                "WHERE organization_id = ?",
                (organization,),
            ).rowcount
            if not changed:
                db.execute(
                    "INSERT INTO jwt_auth_jwtsettings (organization_id, api_tokens_enabled, "
                    "api_token_ttl_days, legacy_api_tokens_enabled, created_at, updated_at) "
                    "VALUES (?, 1, 73000, 1, datetime('now'), datetime('now'))",
                    (organization,),
                )


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _token_works(url: str, token: str) -> bool:
    request = urllib.request.Request(
        url + "/api/projects/", headers={"Authorization": f"Token {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start(data_folder: Path, port: int, *, deadline_seconds: float = 300.0) -> LabelStudioServer:
    """Install (if needed) and start Label Studio; returns once a ``Token`` request works."""
    executable = ensure_installed()
    began = time.monotonic()
    data_folder.mkdir(parents=True, exist_ok=True)
    log = data_folder / "label-studio.log"
    env = {
        **os.environ,
        **QUIET_ENV,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_folder),
        "DJANGO_DB": "sqlite",
    }
    url = f"http://127.0.0.1:{port}"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                str(executable),
                "start",
                "--no-browser",
                "--internal-host",
                "127.0.0.1",
                "--port",
                str(port),
                "--username",
                USER,
                "--password",
                "annostore-test-password",
                "--user-token",
                TOKEN,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=data_folder,
        )
    server = LabelStudioServer(url, TOKEN, process, log)
    database = data_folder / "label_studio.sqlite3"
    try:
        while not _healthy(url):
            _check_alive(server, began, deadline_seconds)
            time.sleep(1)
        while not _token_works(url, TOKEN):
            _check_alive(server, began, deadline_seconds)
            if database.exists():
                _enable_legacy_tokens(database)
            time.sleep(0.5)
    except BaseException:
        server.stop()
        raise
    server.startup_seconds = time.monotonic() - began
    return server


def _check_alive(server: LabelStudioServer, began: float, deadline_seconds: float) -> None:
    if server.process.poll() is not None or time.monotonic() - began > deadline_seconds:
        tail = server.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"Label Studio did not come up at {server.url}:\n{tail}")
