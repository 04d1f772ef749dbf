"""The Label Studio client's failures, against small stand-in servers on 127.0.0.1: every
one is a clear RemoteError, never a traceback, never the token, and nothing half-recorded."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import free_port

import annostore
from annostore import labelstudio
from annostore._ls_client import LabelStudioClient

TOKEN = "f" * 40
Handler = Callable[[BaseHTTPRequestHandler, str, dict], tuple[int, object]]


@pytest.fixture
def stub() -> Iterator[Callable[[Handler], str]]:
    """Start an HTTP server whose answers ``handler(request, method, body)`` decides."""
    servers: list[ThreadingHTTPServer] = []

    def start(handler: Handler) -> str:
        class Answer(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                status, payload = handler(self, self.command, body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _answer

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_server_error_names_the_request_and_the_detail(stub):
    url = stub(lambda request, method, body: (500, {"detail": "database is locked"}))
    with pytest.raises(annostore.RemoteError) as caught:
        LabelStudioClient(url, TOKEN).project(3)
    message = str(caught.value)
    assert f"Label Studio at {url}: GET /api/projects/3/ failed with HTTP 500" in message
    assert "database is locked" in message and TOKEN not in message
    assert caught.value.status == 500


def test_refused_token_and_missing_things(stub):
    url = stub(
        lambda request, method, body: (
            (401, {"detail": "Invalid token."})
            if "nothing" not in request.path
            else (404, {"detail": "Not found."})
        )
    )
    with pytest.raises(annostore.RemoteError, match="refused the API token") as caught:
        LabelStudioClient(url, TOKEN).project(1)
    assert TOKEN not in str(caught.value)
    with pytest.raises(annostore.NotFoundError, match="found nothing"):
        LabelStudioClient(url, TOKEN).request("GET", "/api/nothing/")


def test_an_answer_that_is_not_json(stub):
    url = stub(lambda request, method, body: (200, b"<html>proxy login</html>"))
    with pytest.raises(annostore.RemoteError, match="not JSON"):
        LabelStudioClient(url, TOKEN).project(1)


def test_a_server_that_never_answers_times_out():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with pytest.raises(
            annostore.RemoteError, match=r"did not answer GET /api/projects/1/ within 0.3 s"
        ):
            LabelStudioClient(url, TOKEN, timeout=0.3).project(1)


def test_nothing_listening_and_bad_urls():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(annostore.RemoteError, match=f"cannot reach Label Studio at {url}"):
        LabelStudioClient(url, TOKEN).project(1)
    with pytest.raises(annostore.RemoteError, match="not an http"):
        LabelStudioClient("ftp://example.invalid", TOKEN)
    with pytest.raises(annostore.RemoteError, match="LABEL_STUDIO_API_KEY"):
        LabelStudioClient(url, "")


def test_a_personal_access_token_is_exchanged_for_a_bearer_token(stub):
    seen = []

    def handler(request, method, body):
        seen.append((request.path, request.headers.get("Authorization")))
        if request.path == "/api/token/refresh/":
            assert body == {"refresh": "aaa.bbb.ccc"}
            return 200, {"access": "short-lived"}
        return 200, {"id": 1, "title": "x"}

    client = LabelStudioClient(stub(handler), "aaa.bbb.ccc")
    client.project(1)
    client.project(1)
    assert seen == [
        ("/api/token/refresh/", None),
        ("/api/projects/1/", "Bearer short-lived"),
        ("/api/projects/1/", "Bearer short-lived"),
    ]


class FakeLabelStudio:
    """Just enough of Label Studio's project and import API; import fails when told to."""

    def __init__(self, fail_on_import: int | None = None):
        self.projects: list[dict] = []
        self.tasks: list[dict] = []
        self.imports = 0
        self.fail_on_import = fail_on_import

    def __call__(self, request, method, body):
        path = request.path.split("?")[0]
        if path == "/api/projects/" and method == "GET":
            return 200, {"count": len(self.projects), "next": None, "results": self.projects}
        if path == "/api/projects/" and method == "POST":
            project = {"id": len(self.projects) + 1, **body}
            self.projects.append(project)
            return 201, project
        if path.startswith("/api/projects/") and path.endswith("/import"):
            self.imports += 1
            if self.imports == self.fail_on_import:
                return 503, {"detail": "maintenance"}
            first = len(self.tasks) + 1
            self.tasks += body
            return 201, {"task_count": len(body), "task_ids": list(range(first, first + len(body)))}
        if path.startswith("/api/projects/"):
            return 200, self.projects[int(path.split("/")[3]) - 1]
        return 404, {"detail": "Not found."}


def test_a_push_that_fails_part_way_says_what_landed_and_resumes(stub, tmp_path, monkeypatch):
    from helpers import boxes

    monkeypatch.setattr(labelstudio, "BATCH_SIZE", 2)
    fake = FakeLabelStudio(fail_on_import=3)
    url = stub(fake)
    ds = annostore.open(str(tmp_path / "store")).create_dataset("pets")
    ds.commit(boxes(5))
    with pytest.raises(annostore.RemoteError) as caught:
        labelstudio.push(ds, url=url, token=TOKEN)
    message = str(caught.value)
    assert "HTTP 503: maintenance" in message
    assert "4 of 5 new tasks and 0 predictions landed in project 1" in message
    assert "pushing again sends the rest" in message and TOKEN not in message
    result = labelstudio.push(ds, url=url, token=TOKEN)
    assert (result.tasks_pushed, result.tasks_already_there) == (1, 4)
    assert [t["data"]["image"] for t in fake.tasks] == [f"img/{i}.jpg" for i in range(5)]
    # the token is in no file of the store
    for path in (tmp_path / "store").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes()


def test_project_titles_label_studio_refuses_are_caught_before_any_request(tmp_path):
    ds = annostore.open(str(tmp_path / "store")).create_dataset("d")
    with pytest.raises(annostore.AnnostoreError, match="3 to 50 characters; 'd' has 1"):
        labelstudio.push(ds, url=f"http://127.0.0.1:{free_port()}", token=TOKEN)
