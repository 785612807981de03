"""The demo as an edit: three camera-marker shots, Shade Sequence, a re-shade, one sheet.

storyboard (bpy) → three cameras bound to markers → `shade --all-shots` (tiny models, then
`preview`) → `shade --take ... --frames A-B` on the middle shot → `storyshade sheet` →
demo-out/sequence/: edit.blend, sequence_sheet.png and timings.md (a table with the
machine and date, for the notes).
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("STORYSHADE_DEMO_OUT") or REPO / "demo-out") / "sequence"
sys.path[:0] = [str(REPO), str(REPO / "demo"), str(REPO / "backend"), str(REPO / "tests")]
SHOTS = (  # name, first frame, camera (x, y, z), yaw in degrees
    ("sh010", 1, (0.5, -7.0, 1.6), -12.0),
    ("sh020", 9, (-4.0, -3.0, 1.4), -40.0),
    ("sh030", 17, (4.5, -2.5, 1.8), 48.0),
)


def say(text: str) -> None:
    print(f"[sequence demo] {text}", flush=True)


def bind_shots(scene) -> None:
    """A camera per shot, bound to a marker on its first frame (Bind Camera to Markers)."""
    import bpy

    for name, frame, location, yaw in SHOTS:
        cam = bpy.data.objects.new(f"Cam_{name}", bpy.data.cameras.new(name))
        scene.collection.objects.link(cam)
        cam.data.lens = 35
        cam.location = location
        cam.rotation_euler = (math.radians(84), 0.0, math.radians(yaw))
        scene.timeline_markers.new(name, frame=frame).camera = cam


def timed(label: str, argv: list[str], rows: list[tuple[str, float]]) -> None:
    from addon.operators import cli

    t = time.monotonic()
    if cli.main(argv) != 0:
        raise SystemExit(f"{label} failed")
    rows.append((label, time.monotonic() - t))
    say(f"{label}: {rows[-1][1]:.1f} s")


def main() -> int:
    import bpy
    from serverproc import ServerProcess
    from storyboard import build_storyboard
    from storyshade.models.tiny import write_tiny_models

    import addon

    OUT.mkdir(parents=True, exist_ok=True)
    models = OUT.parent / "models"
    if not (models / "checkpoints" / "tiny-sd15").is_dir():
        write_tiny_models(models)
    scene = build_storyboard(frames=24, width=512, height=288)
    addon.register()
    bind_shots(scene)
    blend = OUT / "edit.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    rows: list[tuple[str, float]] = []
    with ServerProcess(OUT / "server", models) as server:
        base = ["shade", "--server", server.url, "--prompt", "a hero walks into town"]
        timed("3 shots, tiny models", [*base, "--preset", "tiny", "--all-shots"], rows)
        timed("3 shots, preview", [*base, "--preset", "preview", "--all-shots"], rows)
        take = "sh020_take_001"
        timed(f"re-shade 11-13 of {take}", [*base, "--take", take, "--frames", "11-13"], rows)
    sheet = OUT / "sequence_sheet.png"
    t = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "storyshade", "sheet", str(OUT / "storyshade"), "--out", str(sheet)],
        check=True,
    )
    rows.append(("storyshade sheet", time.monotonic() - t))
    table = [
        f"Sequence demo: 3 camera-marker shots of 8 frames at 512x288 (demo/run_sequence.py), "
        f"{platform.machine()} with {os.cpu_count()} cores, no GPU, "
        f"{time.strftime('%Y-%m-%d')}. Times include the Cycles export of each shot.",
        "",
        "| run | seconds |",
        "|---|---|",
        *[f"| {label} | {seconds:.1f} |" for label, seconds in rows],
    ]
    (OUT / "timings.md").write_text("\n".join(table) + "\n", encoding="utf-8")
    print("\n".join(table))
    say(f"sheet: {sheet}; edit: {blend}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    raise SystemExit(main())
