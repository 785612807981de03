"""Shared helpers for the server tests (test_server_*.py, test_api_fuzz.py): zipped synthetic
bundles, job submission over real HTTP, SSE reading, a token-aware server process.

Kept in a test_server_* module so it has one owner with the tests it serves; its own tests
check the helpers themselves.
"""

from __future__ import annotations

import io
import json
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import httpx
from conftest import write_synthetic_bundle
from serverproc import ServerProcess
from storyshade.wire.archive import zip_bundle

zip_dir = zip_bundle  # the name the server tests use

TINY = {"preset": "tiny", "steps": 1}
TERMINAL = ("done", "failed", "cancelled")


def bundle_zip(root: Path, frames: int = 2, size: tuple[int, int] = (64, 48), **kw: Any) -> bytes:
    """A valid synthetic bundle (see conftest.write_synthetic_bundle), zipped."""
    return zip_dir(write_synthetic_bundle(root, frames, size, **kw))


def post_job(
    client: httpx.Client,
    data: bytes,
    settings: dict | str | None = None,
    **form: Any,
) -> httpx.Response:
    text = settings if isinstance(settings, str) else json.dumps(settings or TINY)
    fields = {"settings": text, **{k: str(v) for k, v in form.items()}}
    return client.post(
        "/v1/jobs", files={"bundle": ("bundle.zip", data, "application/zip")}, data=fields
    )


def submit(client: httpx.Client, data: bytes, settings: dict | None = None, **form: Any) -> dict:
    resp = post_job(client, data, settings, **form)
    assert resp.status_code == 201, resp.text
    return resp.json()


def wait_state(
    client: httpx.Client, job_id: str, states: tuple[str, ...] = TERMINAL, timeout: float = 240
) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} not in {states} after {timeout}s: {job}")


def read_events(
    url: str,
    job_id: str,
    last: int | None = None,
    *,
    stop=None,
    headers: dict | None = None,
    timeout: float = 240,
) -> list[dict]:
    """SSE events of a job until the stream ends (or `stop(event)` is true)."""
    hdrs = dict(headers or {})
    if last is not None:
        hdrs["Last-Event-ID"] = str(last)
    out: list[dict] = []
    with httpx.Client(base_url=url, timeout=timeout) as c:
        with c.stream("GET", f"/v1/jobs/{job_id}/events", headers=hdrs) as resp:
            assert resp.status_code == 200, resp.read()
            for line in resp.iter_lines():
                if line.startswith("data:"):
                    out.append(json.loads(line[5:]))
                    if stop and stop(out[-1]):
                        break
    return out


class TokenServer(ServerProcess):
    """A server process started with --token; its readiness probe sends the token."""

    def __init__(self, data: Path, models: Path | None, token: str, *extra: str) -> None:
        super().__init__(data, models, "--token", token, *extra)
        self.token = token

    def get(self, path: str) -> dict:
        req = urllib.request.Request(
            self.url + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())


def test_bundle_zip_holds_a_loadable_bundle(tmp_path: Path) -> None:
    from storyshade.bundle import load_bundle

    data = bundle_zip(tmp_path / "b", frames=3)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.extractall(tmp_path / "out")
    assert load_bundle(tmp_path / "out").shot.frame_numbers == [1, 2, 3]
