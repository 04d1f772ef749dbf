"""A small client for Label Studio's REST API, over the standard library's HTTP.

Only what the push / pull / status workflow needs: projects, task import (with the ids
Label Studio gives the new tasks), prediction import and the JSON export. Every failure
— a refused token, a server error, a timeout, an unreachable host, an answer that is not
JSON — is a :class:`~annostore.RemoteError` naming the server and the request; the token
is never part of a message.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .errors import NotFoundError, RemoteError

__all__ = ["TOKEN_ENV", "URL_ENV", "LabelStudioClient"]

TOKEN_ENV = "LABEL_STUDIO_API_KEY"
URL_ENV = "LABEL_STUDIO_URL"
#: Label Studio's limits on a project title
TITLE_LENGTH = (3, 50)


class LabelStudioClient:
    """Talks to one Label Studio server as one user.

    ``token`` is either a legacy API token (sent as ``Authorization: Token …``) or a
    personal access token (a JWT refresh token, exchanged once for an access token and
    sent as ``Bearer``), as Label Studio's own SDK does.
    """

    def __init__(self, url: str, token: str, *, timeout: float = 60.0):
        if not url:
            raise RemoteError(f"no Label Studio URL given (--url or ${URL_ENV})")
        if not token:
            raise RemoteError(f"no Label Studio API token given (--token or ${TOKEN_ENV})")
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise RemoteError(f"not an http(s) URL of a Label Studio server: {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._token = token
        self._authorization: str | None = None

    # --------------------------------------------------------------------- transport

    def _auth_header(self) -> str:
        if self._authorization is None:
            if self._token.count(".") == 2:  # a JWT: a personal access (refresh) token
                answer = self._send("POST", "/api/token/refresh/", {"refresh": self._token}, None)
                access = answer.get("access") if isinstance(answer, dict) else None
                if not access:
                    raise RemoteError(
                        f"Label Studio at {self.url} gave no access token for the personal access token"
                    )
                self._authorization = f"Bearer {access}"
            else:
                self._authorization = f"Token {self._token}"
        return self._authorization

    def request(self, method: str, path: str, body: Any = None, *, raw: bool = False) -> Any:
        """Send one request; the answer parsed as JSON (or its bytes with ``raw``)."""
        return self._send(method, path, body, self._auth_header(), raw=raw)

    def _send(
        self, method: str, path: str, body: Any, authorization: str | None, *, raw: bool = False
    ) -> Any:
        headers = {"Accept": "application/json"}
        if authorization:
            headers["Authorization"] = authorization
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        where = f"{method} {path.split('?')[0]}"
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = _detail(exc.read())
            exc.close()
            if exc.code in (401, 403):
                raise RemoteError(
                    f"Label Studio at {self.url} refused the API token ({exc.code} on {where}: {detail})",
                    status=exc.code,
                ) from None
            if exc.code == 404:
                raise NotFoundError(
                    f"Label Studio at {self.url}: {where} found nothing (404: {detail})"
                ) from None
            raise RemoteError(
                f"Label Studio at {self.url}: {where} failed with HTTP {exc.code}: {detail}",
                status=exc.code,
            ) from None
        except (TimeoutError, urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise RemoteError(
                    f"Label Studio at {self.url} did not answer {where} within {self.timeout:g} s"
                ) from None
            raise RemoteError(f"cannot reach Label Studio at {self.url}: {reason}") from None
        if raw:
            return payload
        try:
            return json.loads(payload) if payload else None
        except ValueError:
            raise RemoteError(
                f"Label Studio at {self.url}: {where} answered with something that is not JSON "
                f"({payload[:80]!r})"
            ) from None

    # ----------------------------------------------------------------------- the API

    def find_project(self, title: str) -> dict[str, Any] | None:
        """The project with exactly this title (None when there is none)."""
        query = urllib.parse.urlencode({"title": title, "page_size": 100})
        path: str | None = f"/api/projects/?{query}"
        found = []
        while path:
            page = self.request("GET", path)
            found += [p for p in page.get("results", []) if p.get("title") == title]
            following = page.get("next")
            path = None
            if following:
                parts = urllib.parse.urlsplit(following)
                path = f"{parts.path}?{parts.query}"
        if len(found) > 1:
            ids = ", ".join(str(p["id"]) for p in found)
            raise RemoteError(
                f"Label Studio at {self.url} has {len(found)} projects titled {title!r} "
                f"(ids {ids}); rename one"
            )
        return self.project(found[0]["id"]) if found else None

    def project(self, project_id: int) -> dict[str, Any]:
        return self.request("GET", f"/api/projects/{int(project_id)}/")

    def create_project(self, title: str, label_config: str) -> dict[str, Any]:
        return self.request(
            "POST", "/api/projects/", {"title": title, "label_config": label_config}
        )

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> list[int]:
        """Create ``tasks`` (with their predictions); the new tasks' ids, in order."""
        answer = self.request(
            "POST", f"/api/projects/{int(project_id)}/import?return_task_ids=true", tasks
        )
        ids = answer.get("task_ids") if isinstance(answer, dict) else None
        if not isinstance(ids, list) or len(ids) != len(tasks):
            raise RemoteError(
                f"Label Studio at {self.url} created tasks in project {project_id} but did not "
                f"say which ({len(tasks)} sent, answer {str(answer)[:120]})"
            )
        return [int(i) for i in ids]

    def import_predictions(self, project_id: int, predictions: list[dict[str, Any]]) -> int:
        """Add predictions to existing tasks (each names its ``task``); how many were made."""
        answer = self.request(
            "POST", f"/api/projects/{int(project_id)}/import/predictions", predictions
        )
        return int(answer.get("created", 0)) if isinstance(answer, dict) else 0

    def users(self) -> dict[str, str]:
        """User id → email (or username) of the organization's members."""
        answer = self.request("GET", "/api/users/?page_size=10000")
        listed = answer.get("results", []) if isinstance(answer, dict) else answer or []
        return {
            str(user["id"]): str(user.get("email") or user.get("username") or user["id"])
            for user in listed
            if isinstance(user, dict) and "id" in user
        }

    def export(self, project_id: int) -> bytes:
        """Every task of the project with its annotations, as Label Studio's JSON export."""
        return self.request(
            "GET",
            f"/api/projects/{int(project_id)}/export?exportType=JSON&download_all_tasks=true",
            raw=True,
        )


def _detail(body: bytes) -> str:
    """The reason in a Label Studio error answer, short."""
    try:
        answer = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return text[:200] or "no detail"
    if isinstance(answer, dict):
        parts = [str(answer.get("detail") or "")]
        if answer.get("validation_errors"):
            parts.append(json.dumps(answer["validation_errors"], ensure_ascii=False)[:300])
        return " ".join(p for p in parts if p) or json.dumps(answer)[:200]
    return json.dumps(answer)[:200]
