"""Shared helpers for the add-on tests (test_addon_*.py): register the add-on, build tiny
scenes, fake a server client, write PNGs. Runs under every bpy the add-on supports.

Kept in a test_addon_* module (so it has one owner with the tests it serves); its own
tests check the helpers themselves.
"""

from __future__ import annotations

import atexit
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import bpy

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the add-on imports as the package `addon`

import addon  # noqa: E402
from addon.errors import ConnectionLost  # noqa: E402
from addon.settings import prefs  # noqa: E402


def _unregister_at_exit() -> None:
    if hasattr(bpy.types.Scene, "storyshade"):
        addon.unregister()


def ensure_registered() -> None:
    """Register once per process; other modules (or a file load) may already have.

    Unregistered again before Blender shuts down: bpy 4.2 (the PyPI module) crashes at
    exit while a CLI command is still registered. atexit runs handlers newest first, so
    this runs before bpy's own teardown.
    """
    if not hasattr(bpy.types.Scene, "storyshade"):
        addon.register()
        atexit.unregister(_unregister_at_exit)
        atexit.register(_unregister_at_exit)


def enable_prefs(**values):
    """An add-on entry in the preferences so AddonPreferences exist (as when enabled)."""
    addons = bpy.context.preferences.addons
    entry = addons.get(prefs.ADDON_ID)
    if entry is None:
        entry = addons.new()
        entry.module = prefs.ADDON_ID
    p = entry.preferences
    for key, value in values.items():
        setattr(p, key, value)
    return p


def disable_prefs() -> None:
    entry = bpy.context.preferences.addons.get(prefs.ADDON_ID)
    if entry is not None:
        bpy.context.preferences.addons.remove(entry)


def new_scene(frames: int = 2, width: int = 64, height: int = 48):
    """An empty file with a camera looking at a cube: the smallest shot worth shading."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return build_shot(bpy.context.scene, frames, width, height)


def build_shot(scene, frames: int = 2, width: int = 64, height: int = 48):
    """The smallest shot worth shading in `scene`: a camera looking at a cube."""
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.render.threads_mode = "FIXED"
    scene.render.threads = 1
    scene.frame_start, scene.frame_end = 1, frames
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    cam.location = (0.0, -6.0, 1.0)
    cam.rotation_euler = (1.45, 0.0, 0.0)
    scene.collection.objects.link(cam)
    scene.camera = cam
    mesh = bpy.data.meshes.new("Cube")
    mesh.from_pydata(
        [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)],
        [],
        [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)],
    )
    scene.collection.objects.link(bpy.data.objects.new("Cube", mesh))
    return scene


def blender_ext_tool() -> Path:
    """Blender's own extension builder, shipped inside the bpy module."""
    import importlib.util

    origin = Path(importlib.util.find_spec("bpy").origin).parent
    tools = sorted(origin.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    assert tools, f"Blender's extension builder not found under {origin}"
    return tools[-1]


def build_extension(out: Path) -> Path:
    """The extension zip of this checkout, built and validated by Blender's builder."""
    out.mkdir(parents=True, exist_ok=True)
    tool = [sys.executable, str(blender_ext_tool())]
    build = [*tool, "build", "--source-dir", str(REPO), "--output-dir", str(out)]
    subprocess.run(build, check=True, capture_output=True, text=True)
    (zip_path,) = out.glob("storyshade-*.zip")
    check = subprocess.run([*tool, "validate", str(zip_path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    return zip_path


def png_bytes(width: int = 4, height: int = 3, rgb: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    """A valid RGB PNG from the standard library alone."""
    row = b"\x00" + bytes(rgb) * width
    raw = row * height

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def color_strip(scene, name: str, channel: int, start: int, end: int):
    """A colour strip over [start, end): something that is not a take, in the way."""
    from addon import compat

    ed = scene.sequence_editor or scene.sequence_editor_create()
    span = {"length": end - start} if bpy.app.version >= (5, 0) else {"frame_end": end}
    return compat.strips(ed).new_effect(name, "COLOR", channel=channel, frame_start=start, **span)


WAIT_FOR_CANCEL = {"type": "_wait_for_cancel"}


class FakeClient:
    """The client.Client interface with a scripted server behind it.

    `script` is the job's event list (ids are added); WAIT_FOR_CANCEL blocks the stream
    until cancel() is called, then the job ends "cancelled". `frames` are the shot's
    frame numbers; each "frame" event is served as a small PNG.
    """

    url = "http://fake-server"

    def __init__(self, script: list[dict] | None = None, frames=(1, 2), unreachable: bool = False):
        self.frames = list(frames)
        self.script = script if script is not None else default_script(self.frames)
        self.unreachable = unreachable
        self.calls: list[tuple] = []
        self.submitted: dict = {}
        self.cancelled = threading.Event()
        self.job_id = "job1"
        self.not_ready: dict | None = None

    def _call(self, *args) -> None:
        self.calls.append(args)
        if self.unreachable:
            raise ConnectionLost(f"cannot reach the StoryShade server at {self.url}", "start it")

    def health(self) -> dict:
        self._call("health")
        return {"status": "ok", "version": "0.0-fake", "device": "cpu", "model_roots": ["/m"]}

    def readiness(self, preset: str) -> dict | None:
        """Ready, or what `not_ready` says (a dict shaped like GET /v1/readiness)."""
        self._call("readiness", preset)
        return self.not_ready or {"preset": preset, "ready": True, "summary": "ready"}

    def submit(self, bundle_dir: Path, settings: dict, tag: str = "", cancelled=None) -> dict:
        self._call("submit")
        bundle_dir = Path(bundle_dir)
        self.submitted = {
            "settings": settings,
            "tag": tag,
            "files": sorted(
                p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*") if p.is_file()
            ),
            "manifest": (bundle_dir / "shot.json").read_text(encoding="utf-8"),
        }
        return {"id": self.job_id, "state": "queued", "frames": self.frames}

    def jobs(self) -> list[dict]:
        self._call("jobs")
        return [
            {"id": "running", "state": "running", "created": 0.5},
            {"id": "earlier", "state": "queued", "created": 1.0},
            {"id": self.job_id, "state": "queued", "created": 2.0},
        ]

    def job(self, job_id: str) -> dict:
        self._call("job", job_id)
        return {"id": job_id, "state": "cancelled" if self.cancelled.is_set() else "done"}

    def events(self, job_id: str, last_event_id: int = 0):
        self._call("events", job_id, last_event_id)
        for i, event in enumerate(self.script, start=1):
            if i <= last_event_id:
                continue
            if event is WAIT_FOR_CANCEL:
                self.cancelled.wait(20)
                yield {"id": i, "type": "state", "state": "cancelled"}
                return
            yield {"id": i, **event}

    def frame(self, job_id: str, frame: int) -> bytes:
        self._call("frame", job_id, frame)
        return png_bytes(rgb=(frame * 40 % 256, 80, 40))

    def cancel(self, job_id: str) -> dict:
        self.calls.append(("cancel", job_id))
        self.cancelled.set()
        return {"id": job_id, "state": "cancelled"}

    def count(self, name: str) -> int:
        return sum(1 for c in self.calls if c[0] == name)


def default_script(frames: list[int]) -> list[dict]:
    n = len(frames)
    events: list[dict] = [
        {"type": "state", "state": "queued"},
        {"type": "state", "state": "running"},
        {"type": "progress", "stage": "loading", "done": 1, "total": 1},
    ]
    total = 2 * 2  # 2 steps x 2 windows
    done = 0
    for step in (1, 2):
        for window in (1, 2):
            done += 1
            events.append(
                {
                    "type": "progress",
                    "stage": "denoising",
                    "done": done,
                    "total": total,
                    "step": step,
                    "steps": 2,
                    "window": window,
                    "windows": 2,
                }
            )
    for i, frame in enumerate(frames, start=1):
        events.append({"type": "frame", "frame": frame, "index": i - 1})
        events.append({"type": "progress", "stage": "saving", "done": i, "total": n})
    events.append({"type": "state", "state": "done"})
    return events


# -- the helpers' own checks -----------------------------------------------------------------
def test_png_bytes_loads_in_blender(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(png_bytes(5, 2))
    image = bpy.data.images.load(str(path))
    assert tuple(image.size) == (5, 2)
    bpy.data.images.remove(image)


def test_fake_client_replays_after_last_event_id() -> None:
    fake = FakeClient()
    first = list(fake.events("job1"))
    again = list(fake.events("job1", last_event_id=len(first) - 1))
    assert [e["id"] for e in again] == [len(first)]
    assert first[-1] == {"id": len(first), "type": "state", "state": "done"}
