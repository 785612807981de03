"""Demo: a character reference on the mannequin's look, through the real render path.

The demo storyboard (bpy) with its looks → a bundle → `render_bundle` twice on the tiny
random models: without a reference, and with a reference image on the "Mannequin" look
(it acts only inside that look's per-frame mask) → docs/references_sheet.png:

    control pass (depth) | take without | take with the reference | |difference| x4 | reference

The tiny models have random weights: the sheet shows the mechanism (where the reference
acts, frame by frame, as the mannequin moves), not what a real IP-Adapter makes of it.

    .venv/bin/python demo/run_references.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "demo"), str(REPO / "backend")]
FRAMES, WIDTH, HEIGHT = 8, 256, 144


def reference_image(path: Path) -> Path:
    """A stand-in character sheet: a figure in a red coat with black hair, on white."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (160, 240), (245, 245, 240))
    d = ImageDraw.Draw(img)
    d.ellipse((55, 20, 105, 75), fill=(30, 25, 25))  # hair
    d.ellipse((62, 32, 98, 72), fill=(235, 195, 170))  # face
    d.polygon([(50, 80), (110, 80), (125, 190), (35, 190)], fill=(190, 30, 30))  # coat
    d.rectangle((55, 190, 72, 235), fill=(40, 40, 60))
    d.rectangle((88, 190, 105, 235), fill=(40, 40, 60))
    img.save(path)
    return path


def main() -> int:
    import bpy
    import numpy as np
    from PIL import Image
    from storyboard import add_looks, build_storyboard
    from storyshade.bundle import load_bundle
    from storyshade.contact_sheet import contact_sheet
    from storyshade.controls import build_controls
    from storyshade.models.loader import ModelCache
    from storyshade.models.tiny import write_tiny_models
    from storyshade.presets import resolve
    from storyshade.render import render_bundle

    import addon
    from addon.export import bundle as export

    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        scene = build_storyboard(frames=FRAMES, width=WIDTH, height=HEIGHT)
        addon.register()
        add_looks(scene)
        export.export_bundle(scene, work / "bundle")
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bundle = load_bundle(work / "bundle")
        write_tiny_models(work / "models")
        ref = reference_image(work / "girl.png")
        roots, cache = [work / "models"], ModelCache(size=1)
        size = {"width": 128, "height": 72, "prompt": "a hero walks into town"}
        takes = {}
        for name, refs in (
            ("without", []),
            ("with", [{"image": str(ref), "weight": 1.0, "look": "Mannequin"}]),
        ):
            settings = resolve("tiny", {**size, "references": refs})
            paths = render_bundle(bundle, settings, work / name, roots, cache)
            takes[name] = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        controls = build_controls(bundle, resolve("tiny", size))
        rows = list(range(0, FRAMES, 2))
        reference = np.asarray(Image.open(ref))
        diff = [
            np.clip(np.abs(takes["with"][i].astype(int) - takes["without"][i]) * 4, 0, 255)
            for i in rows
        ]
        columns = {
            "control pass (depth)": [controls.to_scene(controls.frames["depth"][i]) for i in rows],
            "take without reference": [takes["without"][i] for i in rows],
            "with a reference on Mannequin": [takes["with"][i] for i in rows],
            "|difference| x4": [d.astype(np.uint8) for d in diff],
            "the reference": [reference for _ in rows],
        }
        labels = [f"frame {bundle.shot.frame_numbers[i]}" for i in rows]
        sheet = contact_sheet(columns, labels, max_width=1400)
        out = REPO / "docs" / "references_sheet.png"
        Image.fromarray(sheet).save(out)
        inside = float(np.mean([d.mean() for d in diff]))
        print(f"[demo] wrote {out} ({time.time() - t0:.0f} s); mean |difference| x4 {inside:.1f}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    raise SystemExit(main())
