"""Per-object looks: time per frame and peak memory with 0, 4 and 16 looks.

The same small random-weight SD1.5-shaped model and child-process measurement as
bench_engine.py (each number from its own process; peak = resident set after loading on the
CPU, allocated VRAM on CUDA). Looks are vertical bands that drift across the frame, so every
look is visible in every window and its regional attention really runs. The stock diffusers
pipeline (no looks: it cannot do them) is measured in the same run for reference.

    python benchmarks/bench_looks.py                        # CPU: 128x128, 2 steps, 16 and 48 frames
    python benchmarks/bench_looks.py --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_engine as be  # one model writer and one measurement for both

HEADING = "## Per-object looks"
LOOK_COUNTS = (0, 4, 16)


def looks_for(count: int) -> list[dict]:
    return [
        {"id": k + 1, "name": f"look{k}", "prompt": f"object number {k}, painted", "weight": 1.0}
        for k in range(count)
    ]


def id_maps(count: int, frames: int, width: int, height: int) -> list:
    """Vertical bands, one per look, shifting one pixel per frame (0 where no look)."""
    import numpy as np

    if count == 0:
        return []
    x = np.arange(width)[None, :].repeat(height, 0)
    return [(((x + i) * count // width) % count + 1).astype(np.uint8) for i in range(frames)]


def measure(case: be.Case) -> dict:
    """Run one windowed render with `case.extra['looks']` looks (in a fresh process)."""
    import torch

    torch.set_num_threads(case.threads)
    from storyshade.bundle import Region
    from storyshade.controls import ControlSet
    from storyshade.engine.windowed import WindowedAnimateDiffEngine
    from storyshade.models.loader import ModelCache, model_key
    from storyshade.progress import Reporter

    count = case.extra.get("looks", 0)
    plain = replace(case, extra={})
    settings = be.settings_for(plain)
    roots = [Path(case.models)]
    cache = ModelCache()
    key = model_key(roots, settings)
    cache.get(key)
    roles = [r for r, _ in key.controlnets]
    frames = be.synthetic_controls(case.frames, case.width, case.height, roles)
    controls = ControlSet(frames=frames, frame_numbers=list(range(case.frames)))
    controls.regions = id_maps(count, case.frames, case.width, case.height)
    looks = [Region(**look) for look in looks_for(count)]
    be.reset_peak(case.device)
    base = be.peak_mib(case.device)
    start = time.perf_counter()
    rendered = sum(
        1
        for _ in WindowedAnimateDiffEngine(roots, cache).render(
            controls, settings, Reporter(), looks=looks
        )
    )
    if case.device.startswith("cuda"):
        torch.cuda.synchronize()
    return {
        **asdict(case),
        "count": rendered,
        "seconds": time.perf_counter() - start,
        "peak_mib": be.peak_mib(case.device),
        "base_mib": base,
    }


def run_child(case: be.Case) -> dict:
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": str(case.threads)}
    if case.engine == "stock":
        return be.run_child(case)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(asdict(case))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {**asdict(case), "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}


def table(results: list[dict]) -> str:
    by = {(r["engine"], r["frames"], r["extra"].get("looks", 0)): r for r in results}
    rows = [
        "| frames | looks | s/frame | time vs 0 looks | peak MiB | peak vs 0 looks | peak vs 16 frames |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    first = min(r["frames"] for r in results)
    for r in results:
        if r["engine"] != "windowed" or "error" in r:
            continue
        n, k = r["frames"], r["extra"].get("looks", 0)
        zero = by.get(("windowed", n, 0))
        short = by.get(("windowed", first, k))
        per = r["seconds"] / n
        rows.append(
            f"| {n} | {k} | {per:.3f} | {r['seconds'] / zero['seconds']:.2f}x | "
            f"{r['peak_mib']:.0f} | {r['peak_mib'] / zero['peak_mib']:.3f}x | "
            f"{r['peak_mib'] / short['peak_mib']:.3f}x |"
        )
    for r in results:
        if r["engine"] == "stock" and "error" not in r:
            rows.append(
                f"| {r['frames']} | stock, none | {r['seconds'] / r['frames']:.3f} | "
                f"{r['seconds'] / by[('windowed', r['frames'], 0)]['seconds']:.2f}x | "
                f"{r['peak_mib']:.0f} | | |"
            )
    failed = [
        f"{r['engine']} {r['frames']}f {r['extra']}: {r['error']}" for r in results if "error" in r
    ]
    return "\n".join(rows) + ("\n\nFailed: " + "; ".join(failed) if failed else "")


def write_section(path: Path, body: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = text.find(HEADING)
    if start < 0:
        text = text.rstrip("\n") + f"\n\n{HEADING}\n\n{body.strip()}\n"
    else:
        end = text.find("\n## ", start + len(HEADING))
        tail = "" if end < 0 else text[end:]
        text = text[:start] + f"{HEADING}\n\n{body.strip()}\n" + tail
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 48])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="runs per case, the fastest kept")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(be.Case(**json.loads(args.child)))), flush=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-looks-") as tmp:
        models = be.write_models(Path(tmp), be.SMALL)
        spec = dict(width=args.size, height=args.size, steps=args.steps, models=str(models))
        cases = [
            be.Case(engine="windowed", frames=n, extra={"looks": k}, **spec)
            for n in args.frames
            for k in LOOK_COUNTS
        ] + [be.Case(engine="stock", frames=args.frames[0], **spec)]
        # Rounds over all cases (not repeats of one case back to back), so a burst of load
        # on the shared machine hits every case alike; the fastest run of each is kept.
        runs: dict[int, list[dict]] = {i: [] for i in range(len(cases))}
        for _ in range(args.repeat):
            for i, case in enumerate(cases):
                runs[i].append(run_child(case))
                print(json.dumps(runs[i][-1]), file=sys.stderr, flush=True)
        results = [
            min(runs[i], key=lambda r: r.get("seconds", float("inf"))) for i in range(len(cases))
        ]
    command = "python benchmarks/bench_looks.py " + " ".join(argv or sys.argv[1:])
    body = (
        f"`{command.strip()}` — {time.strftime('%Y-%m-%d')}; {platform.machine()}, "
        f"{os.cpu_count()} cores shared with other work (load average "
        f"{os.getloadavg()[0]:.1f} at the end), 1 torch thread per child, no GPU; fastest of "
        f"{args.repeat} run(s) per case. Small random "
        f"SD1.5-shaped model (UNet blocks {be.SMALL.blocks}), {args.size}x{args.size}, "
        f"{args.steps} steps, CFG 7.5, 2 ControlNets, windows 16/4; looks are drifting "
        "vertical bands, all visible in every window. Targets: 4 looks at most 1.15x the "
        "time of none, memory at most 1.05x, flat in shot length.\n\n" + table(results)
    )
    print(body)
    if args.write:
        write_section(args.write, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
