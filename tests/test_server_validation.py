"""Bad input gets a 4xx JSON body naming the field, never a 500 or a traceback; oversized
uploads are refused before they reach the disk. One real server with small limits."""

from __future__ import annotations

import io
import json
import socket
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import write_synthetic_bundle
from serverproc import ServerProcess
from test_server_helpers import TINY, post_job, zip_dir

LIMIT_MB = 1


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path):
    data = tmp_path_factory.mktemp("validation") / "data"
    limits = ("--max-upload-mb", str(LIMIT_MB), "--max-frames", "6", "--max-resolution", "256")
    with ServerProcess(data, tiny_models, *limits) as proc:
        yield proc


@pytest.fixture
def client(srv: ServerProcess):
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        yield c


def _shot_edit(edit: Callable[[dict], None]) -> Callable[[Path], bytes]:
    def make(root: Path) -> bytes:
        bundle = write_synthetic_bundle(root)
        shot = json.loads((bundle / "shot.json").read_text())
        edit(shot)
        (bundle / "shot.json").write_text(json.dumps(shot))
        return zip_dir(bundle)

    return make


def _file_edit(edit: Callable[[Path], None], **kw) -> Callable[[Path], bytes]:
    def make(root: Path) -> bytes:
        bundle = write_synthetic_bundle(root, **kw)
        edit(bundle)
        return zip_dir(bundle)

    return make


def _zip(entries: dict[str, bytes]) -> Callable[[Path], bytes]:
    def make(_root: Path) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in entries.items():
                zf.writestr(name, data)
        return buf.getvalue()

    return make


def _bad_depth(value: float) -> Callable[[int], np.ndarray]:
    def depth(_i: int) -> np.ndarray:
        d = np.full((48, 64), 5.0, np.float32)
        d[10, 10] = value
        return d

    return depth


def _set(key: str, value) -> Callable[[dict], None]:
    return lambda shot: shot.__setitem__(key, value)


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda bundle: (bundle / name).write_bytes(data)


BUNDLES: dict[str, tuple[Callable[[Path], bytes], int, str]] = {
    "not a zip": (lambda _r: b"this is not a zip archive", 422, "bundle"),
    "empty upload": (lambda _r: b"", 422, "bundle"),
    "no shot.json": (_zip({"frames/0001.exr": b"x"}), 422, "bundle"),
    "two shot.json": (_zip({"a/shot.json": b"{}", "b/shot.json": b"{}"}), 422, "bundle"),
    "zip slip": (_zip({"shot.json": b"{}", "../evil.txt": b"x"}), 422, "bundle"),
    "absolute path": (_zip({"shot.json": b"{}", "/tmp/evil.txt": b"x"}), 422, "bundle"),
    "shot.json not JSON": (_file_edit(_write("shot.json", b"{nope")), 422, "shot.json"),
    "not a storyshade shot": (_shot_edit(_set("format", "other")), 422, "shot.json:format"),
    "fps wrong type": (_shot_edit(_set("fps", "fast")), 422, "shot.json:fps"),
    "frames out of order": (
        _shot_edit(lambda s: s["frames"].reverse()), 422, "shot.json"
    ),
    "pass outside bundle": (
        _shot_edit(lambda s: s["frames"][0].__setitem__("file", "../x.exr")), 422,
        "shot.json:frames.0.file",
    ),
    "too many frames": (_file_edit(lambda b: None, frames=8), 422, "shot.json:frames"),
    "resolution over limit": (
        _file_edit(lambda b: None, size=(320, 240)), 422, "shot.json:resolution"
    ),
    "pass size differs from shot": (
        _shot_edit(_set("resolution", [80, 48])), 422, "frames[0].file"
    ),
    "missing pass file": (
        _file_edit(lambda b: (b / "frames" / "0002.exr").unlink()), 422, "frames[1].file"
    ),
    "text file as pass": (_file_edit(_write("frames/0001.exr", b"hello")), 422, "frames[0].file"),
    "png as pass": (
        _file_edit(_write("frames/0002.exr", b"\x89PNG\r\n\x1a\n" + b"\0" * 64)), 422,
        "frames[1].file",
    ),
    "NaN depth": (_file_edit(lambda b: None, depth_fn=_bad_depth(np.nan)), 422, "frames[0].file"),
    "infinite depth": (
        _file_edit(lambda b: None, depth_fn=_bad_depth(np.inf)), 422, "frames[0].file"
    ),
}  # fmt: skip

SETTINGS: dict[str, tuple[str, int, str]] = {
    "not JSON": ("{preset: tiny", 400, "settings"),
    "a list": ('["tiny"]', 400, "settings"),
    "NaN": ('{"preset": "tiny", "guidance_scale": NaN}', 400, "settings"),
    "deeply nested": ("[" * 100_000 + "]" * 100_000, 400, "settings"),
    "preset not a name": ('{"preset": 5}', 400, "settings.preset"),
    "unknown preset": ('{"preset": "no-such-preset"}', 400, "preset"),
    "unknown setting": ('{"preset": "tiny", "colour": "red"}', 400, "settings.colour"),
    "steps out of range": ('{"preset": "tiny", "steps": 0}', 400, "settings.steps"),
    "width not multiple of 8": ('{"preset": "tiny", "width": 65}', 400, "settings.width"),
    "unknown engine": ('{"preset": "tiny", "engine": "magic"}', 400, "settings.engine"),
    "step cache past steps": ('{"preset": "tiny", "step_cache": 3}', 400, "settings.step_cache"),
    "compile on preview": (
        '{"preset": "tiny", "engine": "preview", "compile": "on"}', 400, "settings.compile"
    ),
    "unknown checkpoint": ('{"preset": "tiny", "checkpoint": "nope"}', 422, "checkpoint"),
    "checkpoint path escape": (
        '{"preset": "tiny", "checkpoint": "../../etc"}', 422, "settings.checkpoint"
    ),
    "absolute checkpoint": (
        '{"preset": "tiny", "checkpoint": "/etc/passwd"}', 422, "settings.checkpoint"
    ),
    "controlnet path escape": (
        '{"preset": "tiny", "controls": {"depth": {"model": "../../x"}}}', 422,
        "settings.controls.depth.model",
    ),
    "lora path escape": (
        '{"preset": "tiny", "loras": [{"name": "../../../x"}]}', 422, "settings.loras.0.name"
    ),
}  # fmt: skip


def _assert_error(resp: httpx.Response, status: int, field: str) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "fix", "field"}, body
    assert body["field"] is not None and body["field"].startswith(field), body
    assert body["error"] and "Traceback" not in resp.text


@pytest.mark.parametrize("case", sorted(BUNDLES))
def test_bad_bundle_is_a_4xx_naming_the_field(client, tmp_path, case) -> None:
    make, status, field = BUNDLES[case]
    _assert_error(post_job(client, make(tmp_path / "b"), TINY), status, field)


@pytest.mark.parametrize("case", sorted(SETTINGS))
def test_bad_settings_are_a_4xx_naming_the_field(client, tmp_path, case) -> None:
    text, status, field = SETTINGS[case]
    data = zip_dir(write_synthetic_bundle(tmp_path / "b"))
    _assert_error(post_job(client, data, text), status, field)


def test_bad_requests_elsewhere_are_json_4xx(client) -> None:
    _assert_error(client.post("/v1/jobs", data={"settings": "{}"}), 422, "bundle")
    _assert_error(
        client.post("/v1/jobs", files={"bundle": ("b.zip", b"x")}, data={"priority": "high"}),
        422,
        "priority",
    )
    _assert_error(client.post("/v1/jobs", files=[("bundle", ("b.zip", b"x"))] * 1001), 400, "body")
    _assert_error(client.get("/v1/jobs/0123456789ab"), 404, "job_id")
    _assert_error(client.get("/v1/jobs", params={"state": "sleeping"}), 422, "state")
    for resp, status in (
        (client.get("/v1/no-such-endpoint"), 404),
        (client.put("/v1/jobs"), 405),
        (client.post("/v1/jobs", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data; boundary=x"}), 422),
    ):  # fmt: skip
        assert resp.status_code == status and set(resp.json()) == {"error", "fix", "field"}


def test_rejected_uploads_leave_nothing_behind(srv, client) -> None:
    """Runs after the cases above (file order): every refused upload was cleaned away."""
    assert client.get("/v1/jobs").json()["jobs"] == []
    assert list((srv.data / "jobs").iterdir()) == []


def _disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _raw_request(port: int, head: bytes, body_chunks, read_after_head: bool) -> bytes:
    """Send a request by hand (to control Content-Length and pacing); returns the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        if not read_after_head:
            try:
                for chunk in body_chunks:
                    sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server stopped reading: what we want
        reply = b""
        try:
            while data := sock.recv(65536):  # the server closes after a refusal
                reply += data
        except ConnectionResetError:
            pass
        return reply


def test_oversized_uploads_are_refused_before_filling_the_disk(srv, client) -> None:
    limit = LIMIT_MB << 20
    before = _disk_bytes(srv.data)

    # Declared too large: refused from the headers alone, before a byte of body is read.
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {50 * limit}\r\n\r\n"
    ).encode()
    started = time.time()
    reply = _raw_request(srv.port, head, [], read_after_head=True)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b'"field": "bundle"' in reply and time.time() - started < 5

    # Not declared (chunked): counted while it streams and cut off at the limit.
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    part = b'--x\r\nContent-Disposition: form-data; name="bundle"; filename="b.zip"\r\n\r\n'
    piece = b"\0" * (256 << 10)
    chunks = [b"%x\r\n%s\r\n" % (len(part), part)]
    chunks += [b"%x\r\n%s\r\n" % (len(piece), piece)] * 64  # 16 MiB, 16x the limit
    reply = _raw_request(srv.port, head, chunks, read_after_head=False)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 413"), reply[:200]

    # Small on the wire, huge unpacked (a zip bomb): refused from the zip's directory.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("shot.json", b"{}")
        zf.writestr("frames/0001.exr", b"\0" * (8 * limit))
    assert len(buf.getvalue()) < limit
    resp = post_job(client, buf.getvalue(), TINY)
    assert resp.status_code == 413 and resp.json()["field"] == "bundle"

    grown = _disk_bytes(srv.data) - before
    assert grown < limit, f"refused uploads left {grown} bytes on disk"
    assert client.get("/v1/health").json()["status"] == "ok"
