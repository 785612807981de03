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
from test_server_helpers import TINY, TokenServer, bundle_zip, post_job

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
