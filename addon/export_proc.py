"""Export in a background Blender, so the window never waits on Cycles.

In a window, rendering the passes on Blender's main thread stalls the UI for one Cycles
render per frame (0.1-0.2 s for the smallest shot, seconds for a heavy one). Instead the
add-on runs the saved file, or a copy of it when it has unsaved changes, through
`blender -b FILE -c storyshade export ...`; the modal timer only reads its progress
lines. Background mode (the CLI, scripts, tests) exports in-process as before: there is no
window to keep responsive.
"""

from __future__ import annotations

import queue
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import bpy

from .errors import StoryShadeError

PROGRESS = re.compile(r"storyshade: Exporting (\d+)/(\d+)")


def available() -> bool:
    """A window and a Blender executable to run in the background (not the bpy module)."""
    exe = bpy.app.binary_path or ""
    return not bpy.app.background and bool(exe) and Path(exe).name.lower().startswith("blender")


def command(blend: Path, scene, out_dir: Path, start: int, end: int, shot: str, camera) -> list:
    cmd = [bpy.app.binary_path, "-b", str(blend), "-c", "storyshade", "export"]
    cmd += ["--out", str(out_dir), "--frames", f"{start}-{end}", "--scene", scene.name]
    cmd += ["--shot", shot]
    if camera:
        cmd += ["--camera", camera]
    return cmd


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def iter_export_process(
    scene, out_dir: Path, start: int, end: int, *, shot: str, camera: str | None = None
) -> Iterator[tuple[int, int]]:
    """Like export.iter_export, but each `next()` returns at once with the progress so far;
    closing it (cancel) stops the background Blender. Errors name the last thing it said."""
    work = Path(tempfile.mkdtemp(prefix="storyshade-export-"))
    if bpy.data.is_saved and not bpy.data.is_dirty:
        blend = Path(bpy.data.filepath)  # what is on disk is what is open: no copy to write
    else:
        blend = work / "shot.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True, check_existing=False)
    proc = subprocess.Popen(
        command(blend, scene, out_dir, start, end, shot, camera),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    done, total, said = 0, end - start + 1, ""
    try:
        while True:
            ended = False
            while True:
                try:
                    line = lines.get_nowait()
                except queue.Empty:
                    break
                if line is None:
                    ended = True
                    break
                if m := PROGRESS.search(line):
                    done, total = int(m.group(1)), int(m.group(2))
                elif "error" in line.lower() or line.startswith("storyshade:"):
                    said = line
            if ended:
                break
            yield done, total
        if proc.wait() != 0:
            raise StoryShadeError(
                f"the background export failed: {said or f'exit code {proc.returncode}'}",
                "check that the scene renders with Cycles (F12)",
            )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)
