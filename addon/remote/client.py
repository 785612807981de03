"""Talk to the StoryShade server with the standard library only (Blender ships no
third-party HTTP packages). Safe to use from a worker thread: it never touches bpy."""

from __future__ import annotations

import http.client
import io
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib import error, parse, request

from ..errors import ConnectionLost, StoryShadeError
from ..wire.archive import zip_bundle

DEFAULT_URL = "http://127.0.0.1:8787"


def _multipart(
    fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]
) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        out.write(value.encode("utf-8") + b"\r\n")
    for name, (filename, data, ctype) in files.items():
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'.encode()
        )
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


TAG_LIMIT = 200  # the server's limit on a job's tag
CHUNK = 256 * 1024  # upload chunk: a cancel is noticed within one


class UploadCancelled(Exception):
    """The user cancelled while the bundle was still on its way: no job was made."""


def _chunks(body: bytes, cancelled: Callable[[], bool] | None) -> Iterator[bytes]:
    view = memoryview(body)
    for start in range(0, len(body), CHUNK):
        if cancelled is not None and cancelled():
            raise UploadCancelled
        yield view[start : start + CHUNK]


class Client:
    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token or os.environ.get("STORYSHADE_TOKEN") or None
        self.timeout = timeout

    def _open(self, method: str, path: str, body: bytes | None = None, headers=None, timeout=None):
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            return request.urlopen(req, timeout=timeout or self.timeout)
        except error.HTTPError as exc:
            raise self._server_error(exc) from None
        except (error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConnectionLost(
                f"cannot reach the StoryShade server at {self.url} ({reason})",
                "start it with `storyshade serve` (or the panel's Start Server button) "
                "or set the server URL in the add-on preferences",
            ) from None

    @staticmethod
    def _server_error(exc: error.HTTPError) -> StoryShadeError:
        try:
            body = json.loads(exc.read().decode("utf-8"))
        except (ValueError, OSError):
            body = {}
        problem = body.get("error") or f"HTTP {exc.code} {exc.reason}"
        if body.get("field"):
            problem = f"{body['field']}: {problem}"
        err = StoryShadeError(f"server: {problem}", body.get("fix") or "")
        err.status = exc.code
        return err

    def _json(self, method: str, path: str, body: bytes | None = None, headers=None) -> dict:
        with self._open(method, path, body, headers) as resp:
            return json.loads(resp.read().decode("utf-8"))

    def health(self) -> dict:
        return self._json("GET", "/v1/health")

    def readiness(self, preset: str) -> dict | None:
        """Whether the server has the models these presets need (None: a server from
        before /v1/readiness, which only finds out after the upload)."""
        try:
            return self._json("GET", f"/v1/readiness?{parse.urlencode({'preset': preset})}")
        except StoryShadeError as exc:
            if exc.status == 404:
                return None
            raise

    def pull_models(self, names: list[str], dry_run: bool = False) -> dict:
        """Ask the server to download what presets need into its models folder
        (POST /v1/models/pull, its administrator only): the plan (files, bytes, free
        space) with `dry_run`, else the pull job, followed like a render with `events`."""
        body = json.dumps({"names": names, "dry_run": dry_run}).encode("utf-8")
        return self._json("POST", "/v1/models/pull", body, {"Content-Type": "application/json"})

    def submit(
        self,
        bundle_dir: Path,
        settings: dict,
        tag: str = "",
        cancelled: Callable[[], bool] | None = None,
    ) -> dict:
        """Upload the bundle; `tag` names the job in lists and the review page (the take
        strip's name). The body goes in chunks, and `cancelled()` is asked before each:
        a cancel stops the upload within a chunk (raising UploadCancelled), and a server
        that did not get the whole body makes no job of it."""
        fields = {"settings": json.dumps(settings)}
        if tag:
            fields["tag"] = tag[:TAG_LIMIT]
        body, ctype = _multipart(
            fields, {"bundle": ("bundle.zip", zip_bundle(bundle_dir), "application/zip")}
        )
        headers = {"Content-Type": ctype, "Content-Length": str(len(body))}
        return self._json("POST", "/v1/jobs", _chunks(body, cancelled), headers)

    def jobs(self) -> list[dict]:
        """Every job the server knows (to tell the user their place in the queue)."""
        return self._json("GET", "/v1/jobs").get("jobs", [])

    def job(self, job_id: str) -> dict:
        return self._json("GET", f"/v1/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict:
        return self._json("DELETE", f"/v1/jobs/{job_id}")

    def frame(self, job_id: str, frame: int) -> bytes:
        with self._open("GET", f"/v1/jobs/{job_id}/frames/{frame}") as resp:
            return resp.read()

    def events(self, job_id: str, last_event_id: int = 0) -> Iterator[dict]:
        """Server-Sent Events of a job until it ends; resumes after `last_event_id`."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = str(last_event_id)
        with self._open("GET", f"/v1/jobs/{job_id}/events", None, headers, timeout=120) as resp:
            data: list[str] = []
            try:
                for raw in resp:
                    line = raw.decode("utf-8").rstrip("\r\n")
                    if line.startswith("data:"):
                        data.append(line[5:].lstrip())
                    elif not line and data:
                        yield json.loads("\n".join(data))
                        data = []
            except (OSError, http.client.HTTPException) as exc:
                raise ConnectionLost(
                    f"lost the connection to the StoryShade server at {self.url} ({exc})",
                    "check that the server is still running; frames received so far are kept",
                ) from None
