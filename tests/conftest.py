"""Shared fixtures: the store backends every store test runs against, and the S3 server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

import annostore


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    """A moto S3 server on 127.0.0.1, for tests that need a real S3 API."""

    def __init__(self, endpoint: str, process: subprocess.Popen):
        self.endpoint = endpoint
        self.process = process
        self.options = {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "eu-west-1"},
        }

    def new_bucket(self) -> str:
        import s3fs

        name = f"annostore-{uuid.uuid4().hex[:12]}"
        s3fs.S3FileSystem(**self.options, skip_instance_cache=True).mkdir(
            name, region_name="eu-west-1"
        )
        return name

    def url(self) -> str:
        return f"s3://{self.new_bucket()}/store"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """Start moto's S3 server on a free loopback port; stop it by its PID at the end."""
    pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("moto S3 server did not start") from None
            time.sleep(0.1)
    try:
        yield S3Server(f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(params=["local", "memory", pytest.param("s3", marks=pytest.mark.s3)])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict]:
    """(url, storage_options) of a new, empty store on each backend."""
    if request.param == "local":
        return str(tmp_path / "store"), {}
    if request.param == "memory":
        return f"memory://annostore-{uuid.uuid4().hex}", {}
    server: S3Server = request.getfixturevalue("s3_server")
    return server.url(), server.options


@pytest.fixture
def store(store_spec: tuple[str, dict]) -> annostore.Store:
    url, options = store_spec
    return annostore.open(url, storage_options=options)


@pytest.fixture(autouse=True)
def _fresh_file_cache() -> Iterator[None]:
    """Each test reads stored files for itself (the cache is per process)."""
    from annostore._fragments import clear_cache

    clear_cache()
    yield
    clear_cache()


# Property tests run with the "ci" profile; `pytest --hypothesis-profile=thorough` runs them
# much longer, for bug hunting.
settings.register_profile(
    "ci",
    max_examples=30,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=400,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("ci")


CORPUS = Path(
    os.environ.get(
        "ANNOSTORE_CORPUS", Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
    )
)


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The shared real-world corpus (``../shared/corpus``, or ``$ANNOSTORE_CORPUS``); read-only."""
    if not CORPUS.is_dir():
        pytest.fail(f"the shared corpus is missing at {CORPUS}; set ANNOSTORE_CORPUS")
    return CORPUS


def pytest_collection_finish(session: pytest.Session) -> None:
    """Install Label Studio (when not cached) while the other tests run, if any test needs it."""
    if any(item.get_closest_marker("label_studio") for item in session.items):
        from label_studio_server import install_in_background

        install_in_background()


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Label Studio on a free loopback port (installed into its own cached venv)."""
    from label_studio_server import start

    server = start(tmp_path_factory.mktemp("label-studio"), free_port())
    sys.stderr.write(
        f"\nLabel Studio server up in {server.startup_seconds:.1f} s at {server.url}\n"
    )
    try:
        yield server
    finally:
        server.stop()
