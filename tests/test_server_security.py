"""Who may talk to the server: loopback by default, a token everywhere else, no web pages,
no model names that leave the models folder, nothing unpickled."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from serverproc import ServerProcess
from test_server_helpers import TINY, TokenServer, bundle_zip, post_job, wait_state

REPO = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token-for-tests"
ORIGIN = "http://studio.example"


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path):
    with ServerProcess(tmp_path_factory.mktemp("plain") / "data", tiny_models) as proc:
        yield proc


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path):
    data = tmp_path_factory.mktemp("guarded") / "data"
    with TokenServer(data, tiny_models, TOKEN, "--cors-origin", ORIGIN) as proc:
        yield proc


def _serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "STORYSHADE_TOKEN"}
    environ.update(env or {}, PYTHONPATH=str(REPO / "backend"))
    return subprocess.run(
        [sys.executable, "-m", "storyshade", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "studio-box"])
def test_non_loopback_host_without_token_refuses_and_says_why(tmp_path, host) -> None:
    result = _serve("--host", host, "--port", "9", "--data", str(tmp_path / "d"))
    assert result.returncode == 2
    assert "refusing to listen" in result.stderr and "--token" in result.stderr
    assert "STORYSHADE_TOKEN" in result.stderr and "Traceback" not in result.stderr


def test_default_bind_is_loopback_only(plain) -> None:
    """The listening socket (from the kernel's table) is 127.0.0.1, not 0.0.0.0."""
    port = f"{plain.port:04X}"
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and local.endswith(f":{port}"):  # 0A = LISTEN
                listening.append(local.split(":")[0])
    assert listening == ["0100007F"], listening  # 127.0.0.1, little-endian hex


def test_token_is_required_on_every_request(guarded, tmp_path) -> None:
    data = bundle_zip(tmp_path / "b")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        for method, path in (
            ("GET", "/v1/health"),
            ("GET", "/v1/jobs"),
            ("GET", "/v1/jobs/0123456789ab"),
            ("DELETE", "/v1/jobs/0123456789ab"),
            ("GET", "/v1/jobs/0123456789ab/events"),
            ("GET", "/v1/jobs/0123456789ab/frames/1"),
            ("GET", "/openapi.json"),
            ("GET", "/docs"),
        ):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                resp = c.request(method, path, headers=headers)
                assert resp.status_code == 401, (method, path, headers)
                assert resp.json()["field"] == "Authorization"
                assert resp.headers["www-authenticate"] == "Bearer"
        assert post_job(c, data, TINY).status_code == 401
        assert c.get("/v1/health", headers=auth).json()["auth"] is True
        assert c.get("/v1/jobs/0123456789ab", headers=auth).status_code == 404
        schema = c.get("/openapi.json", headers=auth).json()
        assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        c.headers.update(auth)
        assert post_job(c, data, TINY).status_code == 201


def test_token_from_the_environment(tmp_path, tiny_models, monkeypatch) -> None:
    monkeypatch.setenv("STORYSHADE_TOKEN", TOKEN)
    server = TokenServer(tmp_path / "data", tiny_models, TOKEN)
    server.extra = []  # no --token flag: the variable alone must switch auth on
    with server:
        assert httpx.get(f"{server.url}/v1/health").status_code == 401
        assert server.get("/v1/health")["auth"] is True


def test_web_pages_cannot_reach_the_api(plain, guarded) -> None:
    """CORS is closed by default, cross-site POSTs (which skip preflight) are refused, and a
    DNS-rebound Host is refused; an allowed origin gets CORS headers."""
    evil = {"Origin": "http://evil.example"}
    with httpx.Client(base_url=plain.url, timeout=30) as c:
        preflight = c.options(
            "/v1/jobs",
            headers={**evil, "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in preflight.headers
        resp = c.post("/v1/jobs", headers=evil, files={"bundle": ("b.zip", b"x")})
        assert resp.status_code == 403 and resp.json()["field"] == "Origin"
        assert c.get("/v1/jobs", headers=evil).status_code == 403
        rebound = c.get("/v1/jobs", headers={"Host": f"evil.example:{plain.port}"})
        assert rebound.status_code == 421 and rebound.json()["field"] == "Host"
        assert c.get("/v1/jobs", headers={"Host": f"localhost:{plain.port}"}).status_code == 200
    with httpx.Client(base_url=guarded.url, timeout=30) as c:
        preflight = c.options(
            "/v1/jobs",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        ok = c.get("/v1/health", headers={"Origin": ORIGIN, "Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
        assert c.get("/v1/health", headers={**evil, "Authorization": f"Bearer {TOKEN}"}).status_code == 403  # fmt: skip


def test_pickle_weights_are_refused(plain, tmp_path, tiny_models) -> None:
    """A model that exists only as a pickle (.bin/.ckpt) is an error, never loaded."""
    (tiny_models / "checkpoints" / "pickled.ckpt").write_bytes(b"\x80\x04not really")
    try:
        with httpx.Client(base_url=plain.url, timeout=30) as c:
            resp = post_job(c, bundle_zip(tmp_path / "b"), {**TINY, "checkpoint": "pickled"})
        assert resp.status_code == 422 and "checkpoint" in resp.json()["field"]
    finally:
        (tiny_models / "checkpoints" / "pickled.ckpt").unlink()


def test_server_and_stage_cache_never_unpickle() -> None:
    sources = [*(REPO / "backend/storyshade/server").glob("*.py")]
    sources.append(REPO / "backend/storyshade/cache.py")
    for path in sources:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\bpickle\b|torch\.load|allow_pickle=True", text), path


def _security_headers(resp: httpx.Response) -> None:
    where = f"{resp.request.method} {resp.request.url.path} ({resp.status_code})"
    assert resp.headers.get("x-frame-options") == "DENY", where
    assert resp.headers.get("x-content-type-options") == "nosniff", where
    assert resp.headers.get("referrer-policy") == "no-referrer", where
    csp = resp.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, (where, csp)
    assert "default-src 'none'" in csp, (where, csp)


def _declared_too_large(port: int) -> httpx.Response:
    """A POST declaring a body over the limit, sent by hand (httpx sends what it declares)."""
    import socket

    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {1 << 40}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode())
        reply = b""
        while data := sock.recv(65536):
            reply += data
    status_line, *lines = reply.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    request = httpx.Request("POST", f"http://127.0.0.1:{port}/v1/jobs")
    return httpx.Response(int(status_line.split()[1]), headers=headers, request=request)


def test_every_response_carries_the_security_headers(plain, guarded, tmp_path) -> None:
    """HTML, JSON, PNG, SSE and the door's own refusals alike: nothing can be framed,
    sniffed into another type, run inline script or send a Referer."""
    with httpx.Client(base_url=plain.url, timeout=60) as c:
        job = post_job(
            c, bundle_zip(tmp_path / "b"), {"preset": "preview", "width": 64, "height": 64}
        )
        job_id = job.json()["id"]
        _security_headers(job)
        assert wait_state(c, job_id)["state"] == "done"
        responses = [
            c.get("/v1/health"),
            c.get("/v1/jobs"),
            c.get(f"/v1/jobs/{job_id}"),
            c.get(f"/v1/jobs/{job_id}/frames/1"),
            c.get(f"/v1/jobs/{job_id}/events"),
            c.get("/v1/jobs/0123456789ab"),
            c.get("/v1/review"),
            c.get("/v1/review.js"),
            c.get("/v1/review.css"),
            c.get("/openapi.json"),
            c.get("/docs"),
            c.get("/v1/no-such-endpoint"),
            c.put("/v1/jobs"),
            c.get("/v1/jobs", headers={"Host": f"evil.example:{plain.port}"}),  # 421
            c.get("/v1/jobs", headers={"Origin": "http://evil.example"}),  # 403
        ]
    responses.append(_declared_too_large(plain.port))  # 413 from the headers alone
    with httpx.Client(base_url=guarded.url, timeout=60) as c:
        responses += [c.get("/v1/jobs"), c.get("/v1/review")]  # 401, and the public page
    assert {r.status_code for r in responses} >= {200, 401, 403, 404, 405, 413, 421}
    for resp in responses:
        _security_headers(resp)
    assert responses[4].headers["content-type"].startswith("text/event-stream")


def test_the_review_page_runs_no_inline_script(plain) -> None:
    page = httpx.get(f"{plain.url}/v1/review")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text), "an inline script"
    assert not re.search(r"<style|\son\w+=|\sstyle=", page.text), "inline style or handler"
    script = httpx.get(f"{plain.url}/v1/review.js")
    assert script.status_code == 200 and "text/javascript" in script.headers["content-type"]
    assert "fetch(path" in script.text


def test_docs_page_allows_only_its_own_inline_script(plain) -> None:
    """/docs (Swagger UI) needs one inline script: its hash, not 'unsafe-inline'."""
    import base64
    import hashlib

    page = httpx.get(f"{plain.url}/docs")
    assert page.status_code == 200
    inline = re.findall(r"<script>(.*?)</script>", page.text, re.S)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in page.headers["content-security-policy"]
