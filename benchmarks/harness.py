"""What every benchmark here shares: peak memory read the same way (VmHWM on the CPU,
allocated VRAM on CUDA), the same synthetic inputs, children run as a user runs the product
(no glibc tuning variables: it sets its own), and one writer for BENCHMARKS.md's sections.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


# -- inputs ---------------------------------------------------------------------------------
def synthetic_controls(frames: int, width: int, height: int, roles: list[str]) -> dict:
    """A ramp that moves with the frame: cheap, deterministic, different per frame."""
    import numpy as np

    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    out: dict[str, list] = {}
    for k, role in enumerate(roles):
        out[role] = []
        for i in range(frames):
            v = (0.5 + 0.5 * np.sin(6 * x + 4 * y + 0.2 * i + k)).astype(np.float32)
            out[role].append(np.repeat((v * 255).astype(np.uint8)[..., None], 3, axis=-1))
    return out


def write_bundle(root: Path, frames: int, width: int, height: int) -> Path:
    """A shot bundle of `frames` EXR passes (depth and normal) at width x height: a tilted
    plane that slides with the frame, seen by a fixed camera."""
    import numpy as np
    from storyshade.exr import write_depth_normal

    (root / "frames").mkdir(parents=True, exist_ok=True)
    x = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    normal = np.zeros((height, width, 3), np.float32)
    normal[..., 1], normal[..., 2] = 0.6, 0.8
    camera = {
        "matrix_world": np.eye(4).tolist(),
        "lens": 50.0,
        "sensor_width": 36.0,
        "sensor_height": 24.0,
        "clip_start": 0.1,
        "clip_end": 100.0,
    }
    entries = []
    for i in range(frames):
        depth = (5.0 + 2.0 * y + np.sin(3 * x + 0.1 * i)).astype(np.float32)
        write_depth_normal(root / "frames" / f"{i + 1:04d}.exr", depth, normal)
        entries.append({"frame": i + 1, "file": f"frames/{i + 1:04d}.exr", "camera": camera})
    shot = {
        "format": "storyshade.shot",
        "version": 1,
        "shot": "bench",
        "frame_start": 1,
        "frame_end": frames,
        "fps": 24.0,
        "resolution": [width, height],
        "frames": entries,
    }
    (root / "shot.json").write_text(json.dumps(shot), encoding="utf-8")
    return root


# -- peak memory ----------------------------------------------------------------------------
def reset_peak(device: str) -> None:
    """Forget the peak so far (model loading), so the render's own peak is what is read."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return
    try:  # Linux: writing 5 to clear_refs resets VmHWM, the peak resident set
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # elsewhere the peak includes loading


def peak_mib(device: str) -> float:
    """Peak since `reset_peak`: resident set on the CPU (KiB in /proc), allocated VRAM on CUDA."""
    import resource

    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# -- children -------------------------------------------------------------------------------
def without_malloc(env: Mapping[str, str]) -> dict[str, str]:
    """The environment minus glibc's tuning variables: the product sets its own."""
    return {k: v for k, v in env.items() if not k.startswith("MALLOC_")}


def measure_in_child(script: str, fields: dict, threads: int, timeout: float | None) -> dict:
    """Run `script --child FIELDS` in a fresh interpreter as a user runs the product, on
    `threads` CPU threads; its last JSON line, or `fields` with the 'error' it died of."""
    env = {
        **without_malloc(os.environ),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    cmd = [sys.executable, str(Path(script).resolve()), "--child", json.dumps(fields)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**fields, "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {**fields, "error": tail[:300]}


# -- BENCHMARKS.md --------------------------------------------------------------------------
def write_section(path: Path, heading: str, sub_heading: str, body: str, new: str) -> None:
    """Replace the `sub_heading` part of `heading`'s section in `path`, leaving everything
    else alone; a missing section starts as `new` (its introduction and placeholders)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if heading not in text:
        text = f"{text.rstrip()}\n\n{heading}\n\n{new}"
    section_at = text.index(heading)
    section_end = text.find("\n## ", section_at + len(heading))
    section_end = len(text) if section_end < 0 else section_end + 1
    section = text[section_at:section_end]
    start = section.find(sub_heading)
    if start < 0:
        section = section.rstrip("\n") + f"\n\n{sub_heading}\n\n"
        start = section.index(sub_heading)
    stop = section.find("\n### ", start + len(sub_heading))
    tail = "" if stop < 0 else section[stop + 1 :]
    new = section[:start] + f"{sub_heading}\n\n{body.strip()}\n" + ("\n" + tail if tail else "")
    text = text[:section_at] + new + ("\n" if section_end < len(text) else "") + text[section_end:]
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
