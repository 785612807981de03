"""The demo: build a rough storyboard shot, shade it through the real path, look at it.

scene (bpy) → add-on CLI `shade` → a `storyshade serve` process → take strips in the
Video Sequence Editor → demo-out/shot.blend and demo-out/contact_sheet.png.

Uses real models when $STORYSHADE_MODELS holds what the default presets need; otherwise
the tiny random-weight models (their output is noise: they prove the pipeline, not the
look) plus the model-free `preview` engine, which gives a meaningful draft. A Wan VACE
take joins them: `wan-tiny` beside the tiny models, `wan` when its checkpoint is there.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("STORYSHADE_DEMO_OUT") or REPO / "demo-out")  # the tests: a tmp folder
sys.path[:0] = [str(REPO), str(REPO / "demo"), str(REPO / "backend"), str(REPO / "tests")]


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def choose_models() -> tuple[list[Path], str]:
    """(model roots, preset) — real models if configured and complete, else tiny ones."""
    from storyshade.errors import ModelError
    from storyshade.models.loader import model_key
    from storyshade.models.locate import model_roots
    from storyshade.presets import resolve

    roots = model_roots()
    if roots:
        try:
            model_key(roots, resolve())
            say(f"using real models from {', '.join(map(str, roots))}")
            return roots, ""
        except ModelError as exc:
            say(f"real models incomplete: {exc.message}")
    tiny = OUT / "models"
    if not (tiny / "checkpoints" / "tiny-sd15").is_dir():
        from storyshade.models.tiny import write_tiny_models

        write_tiny_models(tiny)
    if not (tiny / "checkpoints" / "tiny-wan-vace").is_dir():
        from storyshade.models.tiny_wan import write_tiny_wan_models

        write_tiny_wan_models(tiny)
    say(
        "NO REAL MODELS CONFIGURED: shading with tiny random-weight models (their frames are "
        "noise). Set STORYSHADE_MODELS to a folder with SD1.5, motion adapter and ControlNets "
        "for real shading (see README, 'Real models')."
    )
    return [tiny], "tiny"


def main() -> int:
    t0 = time.time()
    OUT.mkdir(exist_ok=True)
    import bpy
    from serverproc import ServerProcess
    from storyboard import add_looks, build_storyboard

    import addon
    from addon import compat
    from addon.export import bundle as export
    from addon.operators import cli

    roots, preset = choose_models()
    scene = build_storyboard(frames=24, width=512, height=288)
    addon.register()
    add_looks(scene)  # the mannequin, the crate and the building each get a look
    blend = OUT / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))

    t = time.time()
    export.export_bundle(scene, OUT / "bundle")
    per_frame = (time.time() - t) / 24
    say(f"exported 24 frames at 512x288 in {per_frame:.2f} s/frame -> {OUT / 'bundle'}")

    server = ServerProcess(OUT / "server", None, *[a for r in roots for a in ("--models", str(r))])
    with server:
        say(f"server running at {server.url}")
        presets = [p for p in (preset, wan_preset(roots, preset), "preview") if p is not None]
        for name in presets:
            if name == "preview" and not preview_available():
                continue
            args = ["shade", "--server", server.url, "--prompt", "a hero walks into town"]
            if name:
                args += ["--preset", name]
            if cli.main(args) != 0:
                return 1
    strips = sorted(compat.strips(bpy.context.scene.sequence_editor), key=lambda s: s.channel)
    for s in strips:
        say(
            f"take strip {s.name}: channel {s.channel}, frames {s.frame_final_start}-"
            f"{s.frame_final_end - 1}, {len(s.elements)} images in {s.directory}"
        )
    sheet = write_contact_sheet(OUT / "bundle", strips)
    say(f"contact sheet: {sheet}")
    say(f"saved {blend} (open it in Blender 4.2+ and look at the Sequencer)")
    say(f"demo wall time {time.time() - t0:.1f} s")
    return 0


def wan_preset(roots: list[Path], preset: str) -> str | None:
    """The Wan VACE take's preset: wan-tiny beside the tiny set, wan when its models are
    there, else none (the demo shades without Wan)."""
    if preset == "tiny":
        return "wan-tiny"
    from storyshade.errors import ModelError
    from storyshade.models.loader import model_key
    from storyshade.presets import resolve

    try:
        model_key(roots, resolve("wan"))
    except ModelError:
        say("no Wan VACE checkpoint: the demo has no Wan take (`models check wan` says why)")
        return None
    return "wan"


def preview_available() -> bool:
    from storyshade.engine import get_engine
    from storyshade.errors import StoryShadeError
    from storyshade.models.loader import ModelCache

    try:
        get_engine("preview", [], ModelCache())
    except StoryShadeError:
        return False
    return True


def write_contact_sheet(bundle_dir: Path, strips) -> Path:
    """depth | normal | looks | each take, one row per frame (every 4th frame of the shot)."""
    import bpy
    import numpy as np
    from PIL import Image
    from storyshade.bundle import load_bundle
    from storyshade.contact_sheet import contact_sheet
    from storyshade.controls import build_controls
    from storyshade.presets import resolve

    bundle = load_bundle(bundle_dir)
    controls = build_controls(bundle, resolve(overrides={"width": 512, "height": 288}))
    rows = list(range(0, len(bundle), 4))
    columns = {
        "depth": [controls.frames["depth"][i] for i in rows],
        "normal": [controls.frames["normal"][i] for i in rows],
    }
    if controls.regions:  # one flat colour per look
        from storyshade.controls.inspect import paint_regions, region_colors

        colors = region_colors(bundle.shot.regions)
        columns["looks"] = [paint_regions(controls.regions[i], colors) for i in rows]
    for s in strips:
        folder = Path(bpy.path.abspath(s.directory))
        preset = json.loads(s.get("storyshade_settings", "{}")).get("preset") or "default"
        columns[f"{s['storyshade_take']} ({preset})"] = [
            np.asarray(Image.open(folder / s.elements[i].filename).convert("RGB")) for i in rows
        ]
    labels = [f"frame {bundle.shot.frame_numbers[i]}" for i in rows]
    sheet = contact_sheet(columns, labels, max_width=1600)
    path = OUT / "contact_sheet.png"
    Image.fromarray(sheet).save(path)
    return path


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    raise SystemExit(main())
