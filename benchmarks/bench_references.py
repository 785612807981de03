"""Reference images and colour matching on the tiny models: time, memory, cache, colour.

Every number comes from its own child process (a fresh interpreter: peak memory is that
process's maximum resident set), each case repeated; the machine may be shared, so the load
average is printed beside the figures. Cases:

- time per frame and peak memory with 0, 1 and 4 references (windowed engine), and the
  stock diffusers engine without references (it cannot take them) as the ratio's baseline;
  each child loads the models, renders once to warm up, then times a second job (which
  encodes its images again: that is a job's real cost without a stage cache);
- the stage cache: a job, then the same job with another prompt (controls and reference
  embeddings reused), after a warm-up job on another bundle and image;
- colour matching: the spread (std over windows, mean over RGB) of per-window mean colour
  of the decoded frames, and of per-window mean latents, off and on.

    python benchmarks/bench_references.py
    python benchmarks/bench_references.py --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADING = "## Reference images and colour matching"
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "backend"))


def settings(**kw):
    from storyshade.models.tiny import TINY_NAMES
    from storyshade.settings import Settings

    values = {
        "checkpoint": TINY_NAMES["checkpoint"],
        "motion_adapter": TINY_NAMES["motion_adapter"],
        "controls": {r: {"model": TINY_NAMES[r]} for r in ("depth", "normal")},
        "ip_adapter": TINY_NAMES["ip_adapter"],
        "image_encoder": TINY_NAMES["image_encoder"],
        "prompt": "a lighthouse at dusk",
        "negative_prompt": "blurry",
        "width": 64,
        "height": 64,
        "steps": 2,
        "seed": 11,
        "preview_every": 0,
        **kw,
    }
    return Settings(**values)


def images(folder: Path, count: int) -> list[str]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(count)
    out = []
    for k in range(count):
        path = folder / f"ref{k}.png"
        Image.fromarray(rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)).save(path)
        out.append(str(path))
    return out


def controls(frames: int):
    import numpy as np
    from storyshade.controls import ControlSet

    rng = np.random.default_rng(5)
    data = {
        r: [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(frames)]
        for r in ("depth", "normal")
    }
    return ControlSet(frames=data, frame_numbers=list(range(1, frames + 1)))


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- children -----------------------------------------------------------------------------


def child_render(models: Path, refs: int, engine: str, frames: int, tmp: Path) -> dict:
    from storyshade.engine import get_engine
    from storyshade.models.loader import ModelCache
    from storyshade.progress import Reporter

    paths = images(tmp, refs)
    s = settings(
        engine=engine,
        references=[{"image": p, "weight": 0.8} for p in paths],
        context_length=frames,
        context_overlap=0,
    )
    cache = ModelCache()
    engine_ = get_engine(engine, [models], cache)
    list(engine_.render(controls(frames), s, Reporter()))  # warm-up: models, adapter
    start, cpu = time.perf_counter(), time.process_time()
    list(engine_.render(controls(frames), s, Reporter()))
    return {
        "seconds": time.perf_counter() - start,
        "cpu": time.process_time() - cpu,
        "peak_mib": peak_mib(),
    }


def child_cache(models: Path, frames: int, tmp: Path) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import write_synthetic_bundle
    from storyshade.bundle import load_bundle
    from storyshade.cache import StageCache
    from storyshade.models.loader import ModelCache
    from storyshade.progress import Reporter
    from storyshade.render import render_bundle

    cache, stages = ModelCache(), StageCache(tmp / "stages")
    warm, image = images(tmp, 2)
    out: dict = {}
    for name, bundle_frames, ref, prompt in (
        ("warm", 2, warm, "warm-up"),
        ("first", frames, image, "a lighthouse at dusk"),
        ("second", frames, image, "a red barn at noon"),
    ):
        bundle = load_bundle(write_synthetic_bundle(tmp / f"b{bundle_frames}", bundle_frames))
        events: list[dict] = []
        s = settings(
            references=[{"image": ref}], prompt=prompt, context_length=frames, context_overlap=0
        )
        start = time.process_time()
        render_bundle(bundle, s, tmp / name, [models], cache, Reporter(events.append), stages)
        out[name] = time.process_time() - start
        out[f"{name}_hits"] = sorted(
            e["reused"] for e in events if e["type"] == "note" and e.get("cache") == "hit"
        )
    return out


def child_color(models: Path, frames: int, tmp: Path) -> dict:
    import numpy as np
    from storyshade.engine import sampling
    from storyshade.engine.windowed import WindowedAnimateDiffEngine
    from storyshade.engine.windows import static_windows
    from storyshade.models.loader import ModelCache
    from storyshade.progress import Reporter

    seen: dict = {}
    decode = sampling.WindowedSampler.decode

    def spy(self, z, *a, **kw):
        seen["z"] = z.detach().float().cpu().numpy()[0]
        return decode(self, z, *a, **kw)

    sampling.WindowedSampler.decode = spy  # type: ignore[method-assign]
    length, overlap = 4, 1
    windows = static_windows(frames, length, overlap)
    engine = WindowedAnimateDiffEngine([models], ModelCache())
    out: dict = {"windows": len(windows)}
    for name, cm in (("off", None), ("0.5", {"strength": 0.5}), ("1.0", {"strength": 1.0})):
        s = settings(color_match=cm, context_length=length, context_overlap=overlap, steps=3)
        start = time.process_time()
        video = np.stack([f for _, f in engine.render(controls(frames), s, Reporter())])
        seconds = time.process_time() - start
        rgb = np.stack([video[w.start : w.stop].reshape(-1, 3).mean(0) for w in windows])
        lat = np.stack([seen["z"][:, w.start : w.stop].mean(axis=(1, 2, 3)) for w in windows])
        out[name] = {
            "rgb_spread": float(rgb.std(0).mean()),
            "latent_spread": float(lat.std(0).mean()),
            "seconds": seconds,
        }
    return out


# -- parent -------------------------------------------------------------------------------


def run_child(args: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError((proc.stderr.strip().splitlines() or ["no output"])[-1])


def report(models: Path, frames: int, repeat: int) -> str:
    load_before = os.getloadavg()
    rows = [
        "| case | CPU s/frame (median) | runs, CPU s/frame | vs 0 refs | wall s/frame, runs | peak MiB |",
        "|---|---:|---|---:|---|---:|",
    ]
    base = None
    cases = [("animatediff", 0), ("animatediff", 1), ("animatediff", 4), ("animatediff-stock", 0)]
    for engine, refs in cases:
        runs = [
            run_child(
                {
                    "case": "render",
                    "models": str(models),
                    "refs": refs,
                    "engine": engine,
                    "frames": frames,
                }
            )
            for _ in range(repeat)
        ]
        per = [r["cpu"] / frames for r in runs]
        wall = ", ".join(f"{r['seconds'] / frames:.3f}" for r in runs)
        med = statistics.median(per)
        base = base or med
        label = (
            f"{refs} reference{'s' if refs != 1 else ''}"
            if engine == "animatediff"
            else "stock diffusers, none"
        )
        rows.append(
            f"| {label} | {med:.3f} | {', '.join(f'{p:.3f}' for p in per)} | {med / base:.2f}x | "
            f"{wall} | {max(r['peak_mib'] for r in runs):.0f} |"
        )
    c = run_child({"case": "cache", "models": str(models), "frames": frames})
    col = run_child({"case": "color", "models": str(models), "frames": 12})
    load_after = os.getloadavg()
    lines = [
        "\n".join(rows),
        "",
        "| stage cache | CPU seconds | reused |",
        "|---|---:|---|",
        f"| first job (1 reference) | {c['first']:.2f} | {', '.join(c['first_hits']) or 'nothing'} |",
        f"| same job, another prompt | {c['second']:.2f} ({c['second'] / c['first']:.2f}x) | "
        f"{', '.join(c['second_hits'])} |",
        "",
        f"Colour matching, 12 frames in {col['windows']} windows (context 4, overlap 1), 3 steps:",
        "",
        "| color_match | spread of per-window mean colour, decoded (8-bit levels) | "
        "spread of per-window mean latent | CPU time vs off |",
        "|---|---:|---:|---:|",
    ]
    for name in ("off", "0.5", "1.0"):
        r = col[name]
        label = "off" if name == "off" else f"strength {name}, first window"
        lines.append(
            f"| {label} | {r['rgb_spread']:.3f} | {r['latent_spread']:.4f} | "
            f"{r['seconds'] / col['off']['seconds']:.2f}x |"
        )
    import torch

    head = (
        f"`python benchmarks/bench_references.py --write BENCHMARKS.md` on "
        f"{datetime.date.today().isoformat()}: {platform.machine()}, {os.cpu_count()} cores, "
        f"{platform.python_version()}, torch {torch.__version__}, CPU, the tiny random models "
        f"(`storyshade models tiny`), 64x64, 2 steps, CFG 7.5, {frames} frames in one window; "
        f"each case in its own process on one thread, {repeat} runs, the second job of each "
        f"process timed in CPU seconds (wall seconds beside them). "
        f"Load average (1/5/15 min) before {load_before[0]:.1f}/{load_before[1]:.1f}/"
        f"{load_before[2]:.1f}, after {load_after[0]:.1f}/{load_after[1]:.1f}/"
        f"{load_after[2]:.1f}: the machine is shared with other agents, so wall times are "
        f"noise; CPU time is steadier but still moves by 10-20% under contention."
    )
    return head + "\n\n" + "\n".join(lines)


def write_section(path: Path, body: str) -> None:
    """Replace this benchmark's section of `path` (or append it)."""
    import re

    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    section = f"{HEADING}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--models", help="a tiny models root (default: written to a temp dir)")
    parser.add_argument("--write", help="update this file's section (BENCHMARKS.md)")
    args = parser.parse_args(argv)
    if args.child:
        import torch

        torch.set_num_threads(1)  # CPU time, one thread: steadier than wall time when shared
        job = json.loads(args.child)
        models = Path(job["models"])
        with tempfile.TemporaryDirectory() as tmp:
            if job["case"] == "render":
                out = child_render(models, job["refs"], job["engine"], job["frames"], Path(tmp))
            elif job["case"] == "cache":
                out = child_cache(models, job["frames"], Path(tmp))
            else:
                out = child_color(models, job["frames"], Path(tmp))
        print(json.dumps(out))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(args.models) if args.models else Path(tmp) / "models"
        if not args.models:
            from storyshade.models.tiny import write_tiny_models

            write_tiny_models(models)
        body = report(models, args.frames, args.repeat)
    print(body)
    if args.write:
        write_section(Path(args.write), body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
