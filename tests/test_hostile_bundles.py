"""Hostile uploads against one real server: nothing written outside the job, no unbounded
memory, never a 500, no server path in any answer.

Every test runs after a finished job exists, and afterwards checks that the server is still
healthy and that job's frames are byte-identical (an attack aimed at another job's files
must not have touched them). The server's peak memory over the suite is printed at the end.
"""

from __future__ import annotations

import io
import json
import struct
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import write_synthetic_bundle
from serverproc import ServerProcess
from test_server_helpers import post_job, zip_dir

# the model-free engine at the shot's size: a finished job in a second
PREVIEW = {"preset": "preview", "width": 64, "height": 64}
LIMITS = ("--max-upload-mb", "16", "--max-frames", "8", "--max-resolution", "256")
TRIED: list[tuple[str, int]] = []  # (attack, status) for the summary
PEAKS: list[int] = []  # the server's peak memory before each reset of it


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path):
    data = tmp_path_factory.mktemp("hostile") / "data"
    with ServerProcess(data, tiny_models, *LIMITS) as proc:
        yield proc
        peak = max([*PEAKS, _memory(proc, "VmHWM")]) >> 20
        refused = sum(1 for _, code in TRIED if 400 <= code < 500)
        print(f"\nhostile suite: {len(TRIED)} attacks, {refused} refused with a 4xx, "
              f"server peak memory {peak} MiB")  # fmt: skip


@pytest.fixture(scope="module")
def client(srv: ServerProcess):
    with httpx.Client(base_url=srv.url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def finished(srv: ServerProcess, client: httpx.Client, tmp_path_factory) -> dict:
    """A job that finished before any attack, with its frames' bytes."""
    data = zip_dir(write_synthetic_bundle(tmp_path_factory.mktemp("good"), frames=2))
    resp = post_job(client, data, PREVIEW)
    assert resp.status_code == 201, resp.text
    job = srv.wait_job(resp.json()["id"])
    assert job["state"] == "done", job
    folder = srv.data / "jobs" / job["id"] / "frames"
    return {"id": job["id"], "folder": folder, "frames": _snapshot(folder)}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(autouse=True)
def unharmed(srv: ServerProcess, client: httpx.Client, finished: dict):
    yield
    assert client.get("/v1/health").json()["status"] == "ok"
    assert _snapshot(finished["folder"]) == finished["frames"]
    for job in srv.data.joinpath("jobs").iterdir():  # only finished or accepted jobs remain
        assert (job / "job.json").is_file(), f"a refused upload left {job}"


def _refused(resp: httpx.Response, srv: ServerProcess, attack: str, field: str = "") -> dict:
    TRIED.append((attack, resp.status_code))
    assert 400 <= resp.status_code < 500, f"{attack}: {resp.status_code} {resp.text[:300]}"
    body = resp.json()
    assert set(body) == {"error", "fix", "field"}, body
    assert field in (body["field"] or ""), body
    assert "Traceback" not in resp.text
    for secret in (str(srv.data), str(srv.data.resolve())):
        assert secret not in resp.text, f"{attack}: the answer reveals a server path: {body}"
    return body


# ---- zip building blocks ---------------------------------------------------------------


def _entries(root: Path, frames: int = 2, prefix: str = "") -> dict[str, bytes]:
    bundle = write_synthetic_bundle(root, frames=frames)
    return {
        prefix + p.relative_to(bundle).as_posix(): p.read_bytes()
        for p in sorted(bundle.rglob("*"))
        if p.is_file()
    }


def _zip(entries: dict[str, bytes], method: int = zipfile.ZIP_STORED, **attrs) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            for key, value in attrs.get(name, {}).items():
                setattr(info, key, value)
            zf.writestr(info, data)
    return buf.getvalue()


def _patch_headers(data: bytes, name: str, **fields: int) -> bytes:
    """Rewrite an entry's compression method and/or declared size in both of its headers
    (local and central): what an attacker's own zip writer would emit."""
    out = bytearray(data)
    raw = name.encode()
    for sig, method_at, size_at, name_len_at, header in (
        (b"PK\x03\x04", 8, 22, 26, 30),
        (b"PK\x01\x02", 10, 24, 28, 46),
    ):
        at = out.find(sig)
        while at >= 0:
            (name_len,) = struct.unpack_from("<H", out, at + name_len_at)
            if out[at + header : at + header + name_len] == raw:
                if "method" in fields:
                    struct.pack_into("<H", out, at + method_at, fields["method"])
                if "size" in fields:
                    struct.pack_into("<L", out, at + size_at, fields["size"])
            at = out.find(sig, at + 4)
    return bytes(out)


def _shot(entries: dict[str, bytes], prefix: str = "") -> dict:
    return json.loads(entries[prefix + "shot.json"])


# ---- 1. writes outside the job ---------------------------------------------------------


def test_subfolder_double_slash_cannot_write_anywhere(srv, client, finished, tmp_path) -> None:
    """The reported hole: shot.json in `sub/`, an entry `sub//ABSOLUTE` aimed at a file
    outside the data folder and at another job's frame."""
    outside = tmp_path / "pwned.txt"
    victim = finished["folder"] / "0001.png"
    for target in (outside, victim):
        entries = _entries(tmp_path / f"b{len(TRIED)}", prefix="sub/")
        entries[f"sub/{target}"] = b"owned"  # sub/ + /abs/path = sub//abs/path
        _refused(post_job(client, _zip(entries), PREVIEW), srv, "sub//absolute", "bundle")
    assert not outside.exists()


NAMES = {
    "parent": "../evil.exr",
    "nested parent": "frames/../../evil.exr",
    "absolute": "/tmp/evil.exr",
    "backslash": "frames\\..\\..\\evil.exr",
    "drive letter": "C:/evil.exr",
    "drive letter backslash": "C:\\evil.exr",
    "empty part": "frames//evil.exr",
    "dot part": "frames/./0001.exr",
    "nul byte": "frames/0003.exr\0.txt",
    "very long": "a/" * 600 + "x.exr",
}


@pytest.mark.parametrize("case", sorted(NAMES))
def test_unsafe_entry_names_are_refused(srv, client, tmp_path, case) -> None:
    entries = _entries(tmp_path / "b")
    name = NAMES[case].replace("\0", "^")  # zipfile cuts names at NUL: patched in below
    entries[name] = b"x"
    data = _zip(entries)
    if name != NAMES[case]:
        data = data.replace(name.encode(), NAMES[case].encode())
    _refused(post_job(client, data, PREVIEW), srv, f"name: {case}", "bundle")


@pytest.mark.parametrize(
    "file", ["../x.exr", "/tmp/x.exr", "frames//x.exr", "a\\b.exr", "C:/x.exr", "x.png"]
)
def test_pass_file_names_in_shot_json_stay_inside(srv, client, tmp_path, file) -> None:
    entries = _entries(tmp_path / "b")
    shot = _shot(entries)
    shot["frames"][0]["file"] = file
    entries["shot.json"] = json.dumps(shot).encode()
    _refused(post_job(client, _zip(entries), PREVIEW), srv, f"pass file {file}", "frames")


def test_symlink_entries_are_refused(srv, client, tmp_path) -> None:
    entries = _entries(tmp_path / "b")
    attrs = {"frames/0001.exr": {"external_attr": (0o120777 << 16)}}
    entries["frames/0001.exr"] = b"/etc/passwd"
    body = _refused(post_job(client, _zip(entries, **attrs), PREVIEW), srv, "symlink", "bundle")
    assert "symbolic link" in body["error"]


def test_two_frames_naming_one_file_are_refused(srv, client, tmp_path) -> None:
    entries = _entries(tmp_path / "b")
    shot = _shot(entries)
    shot["frames"][1]["file"] = shot["frames"][0]["file"]
    entries["shot.json"] = json.dumps(shot).encode()
    _refused(post_job(client, _zip(entries), PREVIEW), srv, "one file twice", "shot.json")


def test_duplicate_entries_are_refused(srv, client, tmp_path) -> None:
    entries = _entries(tmp_path / "b")
    buf = io.BytesIO(_zip(entries))
    with zipfile.ZipFile(buf, "a") as zf, pytest.warns(UserWarning):
        zf.writestr("frames/0001.exr", b"second copy")
    _refused(post_job(client, buf.getvalue(), PREVIEW), srv, "duplicate entry", "bundle")


# ---- 2. compression methods and bombs --------------------------------------------------


@pytest.mark.parametrize(
    "method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA, 1, 6, 9, 93, 95, 98, 99], ids=str
)
def test_only_stored_and_deflate_entries_are_accepted(srv, client, tmp_path, method) -> None:
    entries = _entries(tmp_path / "b")
    data = _patch_headers(_zip(entries), "frames/0002.exr", method=method)
    body = _refused(post_job(client, data, PREVIEW), srv, f"method {method}", "bundle")
    assert "method" in body["error"] and "deflate" in body["error"]


def test_bzip2_bomb_declaring_a_small_size_costs_nothing(srv, client, tmp_path) -> None:
    """The reported bomb: ~1 KB of bzip2 that inflates to 1.3 GiB, declared as 100 bytes."""
    entries = _entries(tmp_path / "b")
    entries["frames/0002.exr"] = b"\0" * (256 << 20)
    data = _zip(entries, zipfile.ZIP_BZIP2)
    data = _patch_headers(data, "frames/0002.exr", size=100)
    assert len(data) < 64 << 10
    before = _rss_peak(srv)
    _refused(post_job(client, data, PREVIEW), srv, "bzip2 bomb", "bundle")
    assert _grown(srv, before) < 64 << 20


def test_deflate_entry_inflating_past_its_declared_size_is_cut_off(srv, client, tmp_path) -> None:
    entries = _entries(tmp_path / "b")
    entries["frames/0002.exr"] = b"\0" * (256 << 20)
    data = _patch_headers(
        _zip(entries, zipfile.ZIP_DEFLATED), "frames/0002.exr", size=len(entries["shot.json"])
    )
    before = _rss_peak(srv)
    _refused(post_job(client, data, PREVIEW), srv, "deflate past declared size", "")
    assert _grown(srv, before) < 64 << 20


def test_a_million_entry_directory_is_refused_before_parsing(srv, client) -> None:
    """An end record claiming a million entries and a 60 MB directory: refused from the
    record alone, in well under a second."""
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 60_000_000, 0, 0)
    forged = b"PK\x01\x02" + b"\0" * 4096 + eocd
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(20_000):
            zf.writestr(f"{i}", b"")
    for attack, data in (("forged directory", forged), ("20,000 entries", many.getvalue())):
        started = time.monotonic()
        body = _refused(post_job(client, data, PREVIEW), srv, attack, "bundle")
        assert time.monotonic() - started < 5
        assert "entries" in body["error"]


# ---- 3 and 5. shot.json values ---------------------------------------------------------


def _edit(edit: Callable[[dict], object]) -> Callable[[Path], bytes]:
    def make(root: Path) -> bytes:
        entries = _entries(root)
        shot = _shot(entries)
        edit(shot)
        entries["shot.json"] = json.dumps(shot).encode()
        return _zip(entries)

    return make


def _raw_shot(text: str) -> Callable[[Path], bytes]:
    def make(root: Path) -> bytes:
        entries = _entries(root)
        entries["shot.json"] = text.encode()
        return _zip(entries)

    return make


SHOTS: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "frame_end 1e9": (_edit(lambda s: s.update(frame_end=10**9)), "shot.json:frame_end"),
    "frame_end 1e19": (_edit(lambda s: s.update(frame_end=10**19)), "shot.json:frame_end"),
    "frame_start -1e19": (_edit(lambda s: s.update(frame_start=-(10**19))), "shot.json:frame_start"),
    "frame 1e260": (_edit(lambda s: s["frames"][0].update(frame=10**260)), "shot.json:frames.0.frame"),
    "5000-digit integer": (
        _raw_shot('{"format": "storyshade.shot", "version": 1, "frame_end": ' + "9" * 5000 + "}"),
        "shot.json",
    ),
    "nested 100000 deep": (
        _raw_shot('{"format": "storyshade.shot", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"),
        "shot.json",
    ),
    "200000 frames listed": (
        _edit(lambda s: s.update(frames=[{}] * 200_000)), "shot.json:frames"
    ),
    "fps 1e308": (_edit(lambda s: s.update(fps=1e308)), "shot.json:fps"),
    "fps NaN": (_raw_shot('{"format": "storyshade.shot", "fps": NaN}'), "shot.json"),
    "resolution 1e9": (_edit(lambda s: s.update(resolution=[10**9, 10**9])), "shot.json:resolution"),
    "camera matrix of strings": (
        _edit(lambda s: s["frames"][0]["camera"].update(matrix_world=[["a"] * 4] * 4)),
        "shot.json:frames.0.camera",
    ),
    "shot name 10 KB": (_edit(lambda s: s.update(shot="x" * 10_000)), "shot.json:shot"),
    "version 9": (_edit(lambda s: s.update(version=9)), "shot.json:version"),
    "not an object": (_raw_shot('["storyshade.shot"]'), "shot.json:format"),
}  # fmt: skip


def _held(picture: bytes | None, name: str = "take/0001.png") -> Callable[[Path], bytes]:
    """A re-shade bundle (version 3) whose first frame holds `picture` at `name` (None: the
    picture is named in shot.json but left out of the zip)."""

    def make(root: Path) -> bytes:
        entries = _entries(root)
        shot = _shot(entries)
        shot["version"] = 3
        shot["frames"][0]["take"] = name
        entries["shot.json"] = json.dumps(shot).encode()
        if picture is not None:
            entries[name] = picture
        return _zip(entries)

    return make


def _png(size: tuple[int, int]) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size).save(buf, format="PNG")
    return buf.getvalue()


def _png_claiming(size: tuple[int, int]) -> bytes:
    """A tiny PNG whose header claims `size` (a decompression bomb's first line)."""
    import struct
    import zlib

    data = bytearray(_png((64, 48)))
    data[16:24] = struct.pack(">II", *size)
    crc = zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF
    data[29:33] = struct.pack(">I", crc)
    return bytes(data)


HELD: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "held picture zipped outside the bundle": (_held(_png((64, 48)), "../0001.png"), "bundle"),
    "held picture named outside the bundle": (_held(None, "../0001.png"), "frames.0.take"),
    "held picture missing from the zip": (_held(None), "frames[0].take"),
    "held picture is not a PNG": (_held(b"GIF89a" + b"\0" * 64), "frames[0].take"),
    "held picture of another size": (_held(_png((32, 32))), "frames[0].take"),
    "held picture claims 60000x60000": (_held(_png_claiming((60000, 60000))), "frames[0].take"),
    "every frame held": (
        _edit(lambda s: [f.update(take=f"take/{f['frame']:04d}.png") for f in s["frames"]]
              or s.update(version=3)),
        "shot.json",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SHOTS) + sorted(HELD))
def test_absurd_shot_json_is_a_422_naming_the_field(srv, client, tmp_path, case) -> None:
    make, field = {**SHOTS, **HELD}[case]
    resp = post_job(client, make(tmp_path / "b"), PREVIEW)
    assert resp.status_code == 422, resp.text
    _refused(resp, srv, f"shot.json: {case}", field)


# ---- 4. EXR headers and channels -------------------------------------------------------


def _exr(path: Path, size: tuple[int, int], extra_channels: int) -> bytes:
    import OpenEXR

    w, h = size
    channels = {
        "ViewLayer.Depth.Z": np.full((h, w), 5.0, np.float32),
        "ViewLayer.Normal.X": np.zeros((h, w), np.float32),
        "ViewLayer.Normal.Y": np.zeros((h, w), np.float32),
        "ViewLayer.Normal.Z": np.ones((h, w), np.float32),
    }
    for i in range(extra_channels):
        channels[f"ViewLayer.Junk{i}.V"] = np.zeros((h, w), np.float32)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, channels) as exr:
        exr.write(str(path))
    return path.read_bytes()


def test_exr_with_more_channels_than_a_pass_needs_is_refused(srv, client, tmp_path) -> None:
    entries = _entries(tmp_path / "b")
    entries["frames/0002.exr"] = _exr(tmp_path / "wide.exr", (64, 48), extra_channels=20)
    body = _refused(post_job(client, _zip(entries), PREVIEW), srv, "24 channels", "frames[1]")
    assert "channels" in body["error"]


def test_exr_with_the_combined_pass_is_accepted(srv, client, tmp_path) -> None:
    """What Blender writes (depth, normal and a 4-channel combined pass) stays accepted."""
    entries = _entries(tmp_path / "b")
    entries["frames/0002.exr"] = _exr(tmp_path / "ok.exr", (64, 48), extra_channels=4)
    resp = post_job(client, _zip(entries), PREVIEW)
    assert resp.status_code == 201, resp.text
    client.delete(f"/v1/jobs/{resp.json()['id']}")


def test_exr_larger_than_the_shot_is_refused_from_its_header(srv, client, tmp_path) -> None:
    entries = _entries(tmp_path / "b")
    entries["frames/0001.exr"] = _exr(tmp_path / "big.exr", (2048, 2048), extra_channels=0)
    before = _rss_peak(srv)
    _refused(post_job(client, _zip(entries), PREVIEW), srv, "2048x2048 pass", "frames[0]")
    assert _grown(srv, before) < 32 << 20


# ---- 6. disk ---------------------------------------------------------------------------


def test_files_shot_json_does_not_name_are_never_written(srv, client, tmp_path) -> None:
    entries = _entries(tmp_path / "b")
    entries["junk/filler.bin"] = b"\0" * (8 << 20)  # 8 MiB, deflates to a few KB
    entries["frames/9999.exr"] = b"not referenced"
    data = _zip(entries, zipfile.ZIP_DEFLATED)
    assert len(data) < 1 << 20
    resp = post_job(client, data, PREVIEW)
    assert resp.status_code == 201, resp.text
    job_id = resp.json()["id"]
    srv.wait_job(job_id)
    kept = sorted(p.relative_to(srv.data / "jobs" / job_id / "bundle").as_posix()
                  for p in (srv.data / "jobs" / job_id / "bundle").rglob("*") if p.is_file())  # fmt: skip
    assert kept == ["frames/0001.exr", "frames/0002.exr", "shot.json"]


# ---- every GET path, cross-origin, foreign Host ----------------------------------------


TRAVERSALS = [
    "/v1/jobs/..%2f..%2f..%2fetc%2fpasswd",
    "/v1/jobs/%2e%2e/frames/1",
    "/v1/jobs/..%5c..%5cetc/events",
    "/v1/jobs/{id}/frames/..%2f..%2fjob.json",
    "/v1/jobs/{id}/frames/%2e%2e",
    "/v1/jobs/{id}/frames/1%2f..%2f..%2fjob.json",
    "/v1/jobs/{id}%2f..%2f..%2fjobs",
    "/v1/jobs/{id}/events?after=..%2f..",
    "/v1/jobs/%00/frames/1",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_on_every_get_path_finds_nothing(srv, client, finished, path) -> None:
    resp = client.get(path.format(id=finished["id"]))
    TRIED.append((f"GET {path}", resp.status_code))
    assert resp.status_code in (404, 422), resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert b"root:" not in resp.content and b'"frames_done"' not in resp.content


def test_cross_origin_and_foreign_host_are_refused(srv, client, tmp_path) -> None:
    data = zip_dir(write_synthetic_bundle(tmp_path / "b", frames=2))
    files = {"bundle": ("b.zip", data, "application/zip")}
    for headers, status in (
        ({"Origin": "http://evil.example"}, 403),
        ({"Host": "evil.example"}, 421),
        ({"Host": "attacker.example:8787"}, 421),
    ):
        resp = client.post("/v1/jobs", files=files, data={"settings": "{}"}, headers=headers)
        _refused(resp, srv, f"POST with {headers}")
        assert resp.status_code == status


def test_job_errors_never_name_the_data_folder() -> None:
    from storyshade.server.redact import Redactor

    data = Path("/srv/storyshade-data")
    redact = Redactor({"<data>": data})
    error = {"error": f"[Errno 36] File name too long: '{data}/jobs/x/frames/1.png'", "field": None}
    assert redact.error(error) == {
        "error": "[Errno 36] File name too long: '<data>/jobs/x/frames/1.png'",
        "field": None,
    }


def _memory(srv: ServerProcess, key: str) -> int:
    for line in Path(f"/proc/{srv.proc.pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {key}")


def _rss_peak(srv: ServerProcess) -> int:
    """Bytes the server's peak resident memory is above its current one, from now on: the
    peak is reset here (clear_refs 5) and read back by `_grown`."""
    PEAKS.append(_memory(srv, "VmHWM"))
    Path(f"/proc/{srv.proc.pid}/clear_refs").write_text("5")
    return _memory(srv, "VmRSS")


def _grown(srv: ServerProcess, before: int) -> int:
    return _memory(srv, "VmHWM") - before


def test_errors_name_presets_not_the_servers_folders(tmp_path, tiny_models, monkeypatch) -> None:
    """A broken user preset on the server: the 4xx names the preset and the field, and the
    preset folder (like the data and models folders) is never in the answer."""
    presets = tmp_path / "server-presets"
    (presets / "quality").mkdir(parents=True)
    (presets / "quality" / "huge.toml").write_text(
        'description = "too many steps"\n[settings]\nsteps = 400\n'
    )
    monkeypatch.setenv("STORYSHADE_PRESETS", str(presets))
    with ServerProcess(tmp_path / "data", tiny_models) as srv, httpx.Client(base_url=srv.url) as c:
        data = zip_dir(write_synthetic_bundle(tmp_path / "b", frames=2))
        resp = post_job(c, data, {"preset": "huge"})
        assert 400 <= resp.status_code < 500, resp.text
        assert str(presets) not in resp.text and "<presets>" in resp.text, resp.text
        assert "steps" in resp.text
