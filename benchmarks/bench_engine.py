"""Peak memory and time: the windowed engine against stock diffusers + FreeNoise.

Each measurement runs in its own child process, so one run's allocations never inflate
another's peak. On the CPU the peak is the child's max RSS (models, inputs and activations
alike); on CUDA it is torch's peak allocated VRAM. Both engines use the same random-weight
SD1.5-shaped model, written once to a temporary folder in diffusers format and loaded
through storyshade's own loader.

The "windowed" and "stock" cases get their control frames ready-made in memory before the
peak is reset, so their peak is the engine's. The "bundle" case is the render path in
process (`render_bundle`) from a synthetic bundle of EXR passes (`pass_size` square, else at
the generation size) written to disk first: its peak covers decoding the passes, building
the controls, the windowed engine and saving the PNGs (peak memory with the inputs included).
These children set the process's allocator as every `storyshade` entry point does
(storyshade.allocator), and nothing else about it.

The "render" case is what a user runs: the `storyshade render` command on such a bundle, in
a fresh process with the caller's environment (no allocator or thread variables added; any
`MALLOC_*` the caller has are removed, so the product's own setting is measured), pointed at
the models with `--models` and at a user preset folder holding the case's settings as a
quality preset (the default style stays in play). Its peak is the whole command's peak
resident set (imports, model loading, rendering), as the kernel counts it for the process.

    python benchmarks/bench_engine.py --small                  # CPU: 256x256, 2 steps
    python benchmarks/bench_engine.py --small --write BENCHMARKS.md
    python benchmarks/bench_engine.py --gpu                    # SD1.5 size, 512x512, 20 steps,
                                                               # fps, peak VRAM, levers' ratios
    python benchmarks/bench_engine.py --levers --size 128     # CPU: each speed lever's ratio
    python benchmarks/bench_engine.py --child '{...}'          # one measurement (internal)
    python benchmarks/bench_engine.py --gpu --engine wan-vace  # the Wan engine (bench_wan.py)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "backend"))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from harness import (  # noqa: E402
    measure_in_child,
    peak_mib,
    reset_peak,
    synthetic_controls,
    without_malloc,
    write_bundle,
)
from harness import write_section as write_any_section  # noqa: E402

HEADING = "## Engine: windowed vs stock diffusers"


@dataclass(frozen=True)
class Shape:
    """Channel widths of a random SD1.5-family model set (SD1.5 itself is `SD15`)."""

    blocks: tuple[int, ...]
    vae_blocks: tuple[int, ...]
    text_layers: int
    layers_per_block: int = 2


SMALL = Shape(
    blocks=(32, 64, 128, 128), vae_blocks=(32, 32, 32, 32), text_layers=2, layers_per_block=1
)
SD15 = Shape(blocks=(320, 640, 1280, 1280), vae_blocks=(128, 256, 512, 512), text_layers=12)


NAMES = {
    "checkpoint": "bench-sd15",
    "motion_adapter": "bench-motion-v3",
    "depth": "bench-controlnet-depth",
    "normal": "bench-controlnet-normal",
}


@dataclass
class Case:
    # "windowed", "stock" (AnimateDiffControlNetPipeline + FreeNoise), "bundle" (the render
    # path in process) or "render" (the `storyshade render` command, as a user runs it)
    engine: str
    frames: int
    models: str
    width: int = 256
    height: int = 256
    steps: int = 2
    guidance: float = 7.5
    controlnets: int = 2
    context_length: int = 16
    context_overlap: int = 4
    free_noise_stride: int = 4
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 1
    extra: dict = field(default_factory=dict)  # further Settings fields for the windowed engine
    # "bundle" only: decode every pass into memory and hold it through the render (what a
    # path that keeps its inputs costs; shows that the measurement sees inputs)
    hold_inputs: bool = False
    pass_size: int = (
        0  # "bundle", "render": the bundle's passes are pass_size square (0: width x height)
    )
    names: dict = field(default_factory=lambda: dict(NAMES))  # model folder names by role
    lever: str = ""  # levers table: the row's name ("" = not a lever row)
    repeat: int = 1  # windowed: renders in one process (compile: the 2nd reuses the graphs)


def write_models(root: Path, shape: Shape, seed: int = 0) -> Path:
    """Write checkpoint, motion adapter and two ControlNets of `shape` in diffusers format."""
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, MotionAdapter, UNet2DConditionModel
    from storyshade.models.tiny import save_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    down = ("CrossAttnDownBlock2D",) * (len(shape.blocks) - 1) + ("DownBlock2D",)
    up = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (len(shape.blocks) - 1)
    common = {
        "block_out_channels": shape.blocks,
        "layers_per_block": shape.layers_per_block,
        "down_block_types": down,
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
    }
    unet = UNet2DConditionModel(
        **common, up_block_types=up, sample_size=64, in_channels=4, out_channels=4
    )
    vae = AutoencoderKL(
        block_out_channels=shape.vae_blocks,
        layers_per_block=shape.layers_per_block,
        down_block_types=("DownEncoderBlock2D",) * len(shape.vae_blocks),
        up_block_types=("UpDecoderBlock2D",) * len(shape.vae_blocks),
        latent_channels=4,
        norm_num_groups=32,
        sample_size=512,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
            hidden_size=768,
            intermediate_size=3072,
            num_attention_heads=12,
            num_hidden_layers=shape.text_layers,
            vocab_size=514,
            max_position_embeddings=77,
            projection_dim=768,
        )
    )
    save_checkpoint(root / "checkpoints" / NAMES["checkpoint"], unet, vae, text_encoder)
    MotionAdapter(
        block_out_channels=shape.blocks,
        motion_layers_per_block=shape.layers_per_block,
        motion_num_attention_heads=8,
        motion_norm_num_groups=32,
        motion_max_seq_length=32,
        use_motion_mid_block=False,
    ).save_pretrained(root / "motion" / NAMES["motion_adapter"], safe_serialization=True)
    for role in ("depth", "normal"):
        ControlNetModel(**common, in_channels=4).save_pretrained(
            root / "controlnet" / NAMES[role], safe_serialization=True
        )
    return root


# -- one measurement, in a child process ----------------------------------------------------
def settings_for(case: Case):
    from storyshade.settings import Settings

    roles = ["depth", "normal"][: case.controlnets]
    names = case.names
    extra = dict(case.extra)
    end = extra.pop("controls_end", 1.0)  # the levers table's ControlNet-span row
    return Settings(
        checkpoint=names["checkpoint"],
        motion_adapter=names["motion_adapter"],
        controls={r: {"model": names[r], "scale": 0.8, "end": end} for r in roles},
        prompt="a storyboard frame, cinematic lighting",
        negative_prompt="blurry",
        width=case.width,
        height=case.height,
        steps=case.steps,
        guidance_scale=case.guidance,
        context_length=case.context_length,
        context_overlap=case.context_overlap,
        device=case.device,
        dtype=case.dtype,
        preview_every=0,
        **extra,
    )


def measure(case: Case) -> dict:
    """Run one render and return its time and peak memory (call in a fresh process)."""
    import torch

    torch.set_num_threads(case.threads)
    from storyshade.controls import ControlSet
    from storyshade.models.loader import ModelCache, model_key
    from storyshade.progress import Reporter

    settings = settings_for(case)
    roots = [Path(case.models)]
    cache = ModelCache()
    key = model_key(roots, settings)
    pipe = cache.get(key)
    roles = [r for r, _ in key.controlnets]
    if case.engine == "bundle":
        return _measure_bundle(case, settings, roots, cache)
    frames = synthetic_controls(case.frames, case.width, case.height, roles)
    loaded = peak_mib(case.device)
    reset_peak(case.device)
    base = peak_mib(case.device)  # what stays resident: runtime, models, inputs
    start = time.perf_counter()
    if case.engine == "windowed":
        from storyshade.engine.windowed import WindowedAnimateDiffEngine

        controls = ControlSet(frames=frames, frame_numbers=list(range(case.frames)))
        engine = WindowedAnimateDiffEngine(roots, cache)
        runs = []
        for _ in range(case.repeat):
            count = sum(1 for _ in engine.render(controls, settings, Reporter()))
            if case.device.startswith("cuda"):
                torch.cuda.synchronize()
            runs.append(time.perf_counter() - start)
            start = time.perf_counter()
    else:
        count = _run_stock(pipe, case, settings, frames, roles)
        if case.device.startswith("cuda"):
            torch.cuda.synchronize()
        runs = [time.perf_counter() - start]
    return {
        **asdict(case),
        "count": count,
        "seconds": runs[-1],  # with repeat: the last (warm) render
        "first_seconds": runs[0],  # compile: includes compiling
        "peak_mib": peak_mib(case.device),
        "loaded_mib": loaded,
        "base_mib": base,
    }


def _measure_bundle(case: Case, settings, roots: list[Path], cache) -> dict:
    """The render path from a bundle on disk, in process; the peak includes the inputs."""
    import torch
    from storyshade.bundle import load_bundle
    from storyshade.progress import Reporter
    from storyshade.render import render_bundle

    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        size = (case.pass_size,) * 2 if case.pass_size else (case.width, case.height)
        root = write_bundle(Path(tmp) / "bundle", case.frames, *size)
        bundle = load_bundle(root)
        loaded = peak_mib(case.device)
        reset_peak(case.device)
        base = peak_mib(case.device)  # runtime and models; no input decoded yet
        start = time.perf_counter()
        held = [bundle.read_passes(i) for i in range(len(bundle))] if case.hold_inputs else []
        written = render_bundle(bundle, settings, Path(tmp) / "out", roots, cache, Reporter())
        if case.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        peak = peak_mib(case.device)
        del held
    return {
        **asdict(case),
        "count": len(written),
        "seconds": seconds,
        "peak_mib": peak,
        "loaded_mib": loaded,
        "base_mib": base,
    }


def _run_stock(pipe, case: Case, settings, frames: dict, roles: list[str]) -> int:
    import torch
    from PIL import Image

    pipe.enable_free_noise(
        context_length=case.context_length, context_stride=case.free_noise_stride
    )
    conditioning = [[Image.fromarray(f) for f in frames[r]] for r in roles]
    scales = [settings.controls[r].scale for r in roles]
    out = pipe(
        prompt=settings.prompt,
        negative_prompt=settings.negative_prompt,
        num_frames=case.frames,
        width=case.width,
        height=case.height,
        num_inference_steps=case.steps,
        guidance_scale=case.guidance,
        conditioning_frames=conditioning if len(roles) > 1 else conditioning[0],
        controlnet_conditioning_scale=scales if len(roles) > 1 else scales[0],
        generator=torch.Generator("cpu").manual_seed(0),
        decode_chunk_size=settings.decode_chunk_size,
        output_type="np",
    )
    return len(out.frames[0])


def run_child(case: Case, timeout: float | None = None) -> dict:
    """Measure `case` in a fresh interpreter; a failure comes back as {'error': ...}."""
    if case.engine == "render":
        return run_command(case, timeout)
    return measure_in_child(__file__, asdict(case), case.threads, timeout)


PROMPT = "a storyboard frame, cinematic lighting"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)  # strings and numbers: JSON's spelling is TOML's


def write_quality_preset(folder: Path, case: Case) -> Path:
    """A user preset folder holding the case's settings as the quality preset `bench`: how a
    user points `storyshade render` at their own models and sizes."""
    roles = ["depth", "normal"][: case.controlnets]
    settings = {
        "checkpoint": case.names["checkpoint"],
        "motion_adapter": case.names["motion_adapter"],
        "controls": {r: {"model": case.names[r], "scale": 0.8} for r in roles},
        "width": case.width,
        "height": case.height,
        "steps": case.steps,
        "guidance_scale": case.guidance,
        "context_length": case.context_length,
        "context_overlap": case.context_overlap,
        "device": case.device,
        "dtype": case.dtype,
        "preview_every": 0,
        **case.extra,
    }
    (folder / "quality").mkdir(parents=True, exist_ok=True)
    lines = ['description = "benchmark case"', "", "[settings]"]
    lines += [f"{k} = {_toml(v)}" for k, v in settings.items()]
    (folder / "quality" / "bench.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def run_command(case: Case, timeout: float | None = None) -> dict:
    """`storyshade render` on a synthetic bundle, as a user runs it: its whole peak RSS."""
    with tempfile.TemporaryDirectory(prefix="bench-command-") as tmp:
        root = Path(tmp)
        size = (case.pass_size,) * 2 if case.pass_size else (case.width, case.height)
        bundle = write_bundle(root / "bundle", case.frames, *size)
        env = without_malloc(os.environ)
        env["STORYSHADE_PRESETS"] = str(write_quality_preset(root / "presets", case))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO / "backend"), env.get("PYTHONPATH", "")) if p
        )
        out = root / "out"
        cmd = [
            *(sys.executable, "-m", "storyshade", "render", str(bundle), "--out", str(out)),
            *("--models", case.models, "--preset", "bench", "--prompt", PROMPT),
        ]
        with open(root / "log", "w+b") as log:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            timer = threading.Timer(timeout, proc.kill) if timeout else None
            if timer:
                timer.start()
            _, status, usage = os.wait4(proc.pid, 0)  # ru_maxrss: this child's peak, KiB
            proc.returncode = os.waitstatus_to_exitcode(status)
            seconds = time.perf_counter() - start
            if timer:
                timer.cancel()
            log.seek(0)
            text = log.read().decode("utf-8", "replace")
        if proc.returncode:
            tail = (text.strip().splitlines() or ["no output"])[-1]
            return {**asdict(case), "error": f"exit {proc.returncode}: {tail[:300]}"}
        count = len(list(out.glob("*.png")))
    return {**asdict(case), "count": count, "seconds": seconds, "peak_mib": usage.ru_maxrss / 1024}


# -- the report -----------------------------------------------------------------------------
def _fmt(result: dict, value: float | None, fmt: str) -> str:
    if not result:
        return "not run"
    if "error" in result:
        return "failed"
    return format(value, fmt) if value is not None else "-"


def table(results: list[dict]) -> str:
    """Markdown rows per frame count: both engines' peak, growth and time, and the ratios.

    "Work MiB" is the peak minus what was resident when the render began (runtime, weights,
    the input control frames): the memory the render itself needed.
    """
    if all(r["engine"] == "render" for r in results):
        return render_table(results)
    by = {(r["engine"], r["frames"]): r for r in results}
    counts = sorted({r["frames"] for r in results})
    base = by.get(("windowed", counts[0]), {})
    first_render = by.get(("render", counts[0]), {})
    inputs = any(r["engine"] == "render" for r in results)
    ok = lambda r: bool(r) and "error" not in r  # noqa: E731
    lines = [
        "| frames | windowed peak MiB | stock peak MiB | windowed work MiB | stock work MiB "
        "| windowed s/frame (fps) | stock s/frame (fps) | time ratio | windowed peak vs first row |"
        + (" `storyshade render` peak MiB | its peak vs first row |" if inputs else ""),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if inputs else ""),
    ]
    for n in counts:
        w, s = by.get(("windowed", n), {}), by.get(("stock", n), {})
        rr = by.get(("render", n), {})
        render_cells = [
            _fmt(rr, rr.get("peak_mib"), ".0f"),
            f"{rr['peak_mib'] / first_render['peak_mib']:.3f}x"
            if ok(rr) and ok(first_render)
            else "-",
        ]
        ws = w["seconds"] / n if ok(w) else None
        ss = s["seconds"] / n if ok(s) else None
        lines.append(
            "| "
            + " | ".join(
                [
                    str(n),
                    _fmt(w, w.get("peak_mib"), ".0f"),
                    _fmt(s, s.get("peak_mib"), ".0f"),
                    _fmt(w, w.get("peak_mib", 0) - w.get("base_mib", 0), ".0f"),
                    _fmt(s, s.get("peak_mib", 0) - s.get("base_mib", 0), ".0f"),
                    _fmt(w, ws, ".3f") + (f" ({1 / ws:.2f})" if ws else ""),
                    _fmt(s, ss, ".3f") + (f" ({1 / ss:.2f})" if ss else ""),
                    f"{ws / ss:.2f}" if ws and ss else "-",
                    f"{w['peak_mib'] / base['peak_mib']:.3f}x" if ok(w) and ok(base) else "-",
                    *(render_cells if inputs else []),
                ]
            )
            + " |"
        )
    errors = [
        f"- {r['engine']} {r['frames']} frames: {r['error']}" for r in results if "error" in r
    ]
    return "\n".join(lines + (["", *errors] if errors else []))


def render_table(results: list[dict]) -> str:
    """Markdown rows per frame count for `storyshade render` as a user runs it."""
    results = sorted(results, key=lambda r: r["frames"])
    first = results[0]
    ok = lambda r: "error" not in r  # noqa: E731
    lines = [
        "| frames | `storyshade render` peak MiB | vs first row | command s (all of it) |",
        "|---:|---:|---:|---:|",
    ]
    for r in results:
        vs = f"{r['peak_mib'] / first['peak_mib']:.3f}x" if ok(r) and ok(first) else "-"
        lines.append(
            f"| {r['frames']} | {_fmt(r, r.get('peak_mib'), '.0f')} | {vs} "
            f"| {_fmt(r, r.get('seconds'), '.0f')} |"
        )
    errors = [f"- render {r['frames']} frames: {r['error']}" for r in results if not ok(r)]
    return "\n".join(lines + (["", *errors] if errors else []))


LEVERS_HEADING = "### Speed levers"
# name: (Settings fields, renders in one process); every row otherwise equal to "off"
LEVERS: dict[str, tuple[dict, int]] = {
    "off": ({}, 1),
    "compile": ({"compile": "on"}, 2),
    "step_cache 2": ({"step_cache": 2}, 1),
    "step_cache 3": ({"step_cache": 3}, 1),
    "ControlNets end 0.5": ({"controls_end": 0.5}, 1),
}


def lever_cases(models: Path, frames: int, spec: dict, threads: int) -> list[Case]:
    """The levers rows at `frames` frames, and the stock pipeline at the same settings."""
    cases = [Case(engine="stock", frames=frames, models=str(models), threads=threads, **spec)]
    for name, (extra, repeat) in LEVERS.items():
        cases.append(
            Case(
                engine="windowed",
                frames=frames,
                models=str(models),
                threads=threads,
                extra=extra,
                lever=name,
                repeat=repeat,
                **spec,
            )
        )
    return cases


def levers_table(results: list[dict]) -> str:
    """Each lever's time against the windowed engine with every lever off (and stock)."""
    ok = [r for r in results if "error" not in r]
    lines = [
        "| frames | lever | s/frame (fps) | vs levers off | vs stock | peak MiB "
        "| first render s (compile incl.) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for n in sorted({r["frames"] for r in results}):
        off = next((r for r in ok if r["frames"] == n and r.get("lever") == "off"), None)
        stock = next((r for r in ok if r["frames"] == n and r["engine"] == "stock"), None)
        rows = [
            r for r in results if r["frames"] == n and (r.get("lever") or r["engine"] == "stock")
        ]
        for r in rows:
            name = r.get("lever") or "stock diffusers (FreeNoise)"
            if "error" in r:
                lines.append(f"| {n} | {name} | failed: {r['error'][:120]} | | | | |")
                continue
            spf = r["seconds"] / n
            vs_off = f"{r['seconds'] / off['seconds']:.2f}" if off else "-"
            vs_stock = f"{r['seconds'] / stock['seconds']:.2f}" if stock else "-"
            first = f"{r['first_seconds']:.1f}" if r.get("repeat", 1) > 1 else "-"
            lines.append(
                f"| {n} | {name} | {spf:.3f} ({1 / spf:.2f}) | {vs_off} | {vs_stock} "
                f"| {r['peak_mib']:.0f} | {first} |"
            )
    return "\n".join(lines)


CPU_HEADING = "### CPU, small SD1.5-shaped model"
INPUTS_HEADING = "### CPU, as a user runs it: `storyshade render`"
INPUTS_TARGET = 1.05  # peak incl. inputs at the longest shot vs at 16 frames
GPU_HEADING = "### GPU, SD1.5-sized model"
GPU_PENDING = (
    "Not measured yet: no GPU was available to this work. Run "
    "`python benchmarks/bench_engine.py --gpu --write BENCHMARKS.md` on a CUDA machine "
    "(random SD1.5-sized weights, 512x512, 16 and 64 frames, 20 steps, CFG 7.5, two "
    "ControlNets, float16) to fill this in with frames per second, peak VRAM and each speed "
    "lever's time ratio (compile, step cache 2, ControlNets ending at half the "
    "schedule; at 16 frames). Sized for about 5 minutes on one H100-class GPU (not yet "
    "timed on one).\n"
)
INTRO = (
    "Produced by `benchmarks/bench_engine.py`; every number comes from its own child process. "
    "Peak is the resident set (CPU, VmHWM reset after model loading) or allocated VRAM "
    "(CUDA) while rendering; work is the peak minus what was resident when the render "
    "began (runtime, weights, input control frames). Time is the render call after loading "
    "(text encoding, denoising, decoding). Targets: windowed peak at the longest shot at "
    "most 1.15x its peak at 16 frames; time per frame at most L/(L-O) times stock's.\n"
)


def describe(results: list[dict]) -> str:
    """The setting line and the verdict on both targets, from the results themselves."""
    r = results[0]
    shape = SD15 if r["device"].startswith("cuda") else SMALL
    threads = "" if r["device"].startswith("cuda") else f", {r['threads']} CPU thread(s) each"
    if all(x["engine"] == "render" for x in results):
        threads = f", torch's own thread count ({os.cpu_count()} cores)"
    stock = (
        f" Stock: AnimateDiffControlNetPipeline with FreeNoise (context {r['context_length']}, "
        f"stride {r['free_noise_stride']})."
        if any(x["engine"] == "stock" for x in results)
        else ""
    )
    lines = [
        f"Random weights, UNet blocks {shape.blocks}, {r['width']}x{r['height']}, "
        f"{r['steps']} steps, CFG {r['guidance']}, {r['controlnets']} ControlNets, "
        f"{r['device']} {r['dtype']}{threads}. Windowed: windows {r['context_length']}/"
        f"{r['context_overlap']}, static, pyramid.{stock}"
    ]
    ok = [x for x in results if "error" not in x]
    real = sorted((x for x in ok if x["engine"] == "render"), key=lambda x: x["frames"])
    if real:
        size = real[0]["pass_size"] or f"{r['width']}x{r['height']}"
        size = f"{size}x{size}" if isinstance(size, int) else size
        lines.append(
            "As a user runs it: the `storyshade render` command (the default style, a quality "
            "preset with these settings in a user preset folder, `--models`) in a fresh "
            "process with no allocator or thread variables set, on a synthetic bundle of "
            f"{size} EXR passes on disk. The peak is the whole command's peak resident set "
            "(imports, model loading, decoding the passes, control images, the windowed "
            "engine, saving the PNGs); the process sets its own allocator behaviour "
            "(docs/engine.md)."
        )
    if len(real) >= 2:
        growth = real[-1]["peak_mib"] / real[0]["peak_mib"]
        verdict = "met" if growth <= INPUTS_TARGET else "missed"
        lines.append(
            f"Memory as a user runs it: peak at {real[-1]['frames']} frames is {growth:.3f}x "
            f"its peak at {real[0]['frames']} (target <= {INPUTS_TARGET}x): {verdict}."
        )
    ours = sorted((x for x in ok if x["engine"] == "windowed"), key=lambda x: x["frames"])
    theirs = {x["frames"]: x for x in ok if x["engine"] == "stock"}
    if len(ours) >= 2:
        growth = ours[-1]["peak_mib"] / ours[0]["peak_mib"]
        verdict = "met" if growth <= 1.15 else "missed"
        lines.append(
            f"Memory: windowed peak at {ours[-1]['frames']} frames is {growth:.3f}x its peak "
            f"at {ours[0]['frames']} (target <= 1.15x): {verdict}."
        )
    bound = r["context_length"] / (r["context_length"] - r["context_overlap"])
    ratios = [
        (x["frames"], (x["seconds"] / x["frames"]) / (theirs[x["frames"]]["seconds"] / x["frames"]))
        for x in ours
        if x["frames"] in theirs
    ]
    if ratios:
        worst = max(ratios, key=lambda fr: fr[1])
        verdict = "met" if worst[1] <= bound else "missed"
        lines.append(
            f"Time: windowed time per frame is at most {worst[1]:.2f}x stock's (at "
            f"{worst[0]} frames; target <= {bound:.2f}x): {verdict}."
        )
    return "\n\n".join(lines) + "\n"


def write_section(path: Path, sub_heading: str, body: str) -> None:
    """Replace this benchmark's CPU or GPU part in `path`, leaving everything else alone."""
    new = f"{INTRO}\n{CPU_HEADING}\n\nNot run yet.\n\n{GPU_HEADING}\n\n{GPU_PENDING}"
    write_any_section(path, HEADING, sub_heading, body, new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--small", action="store_true", help="CPU: small model, 256x256, 2 steps")
    mode.add_argument("--gpu", action="store_true", help="CUDA: SD1.5 size, 512x512, 20 steps")
    mode.add_argument("--child", help=argparse.SUPPRESS)
    mode.add_argument("--results", type=Path, help="report saved JSON lines, measure nothing")
    parser.add_argument(
        "--levers", action="store_true", help="CPU: each speed lever's time ratio (16 frames)"
    )
    parser.add_argument("--frames", type=int, nargs="+")
    parser.add_argument(
        "--engines",
        nargs="+",
        default=["windowed", "stock"],
        help="windowed, stock, bundle (the render path in process: peak incl. inputs), "
        "render (the `storyshade render` command as a user runs it: its whole peak)",
    )
    parser.add_argument("--size", type=int, help="generation size (square), e.g. 128")
    parser.add_argument("--steps", type=int, help="denoising steps (--levers: default 6)")
    parser.add_argument(
        "--pass-size", type=int, default=0, help="bundle, render: the bundle's pass size"
    )
    parser.add_argument("--models", type=Path, help="reuse a model folder written earlier")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per child")
    parser.add_argument("--parallel", type=int, default=1, help="children at a time")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per measurement")
    parser.add_argument("--save", type=Path, help="also write the raw results as JSON lines")
    parser.add_argument("--write", type=Path, help="update this file's engine section")
    parser.add_argument("--note", default="", help="a line for the report (machine, load)")
    parser.add_argument(
        "--engine",
        choices=["animatediff", "wan-vace"],
        default="animatediff",
        help="wan-vace: benchmarks/bench_wan.py (with --gpu: 1.3B-sized, 832x480, 81 frames)",
    )
    args = parser.parse_args(argv)
    if args.engine == "wan-vace":
        import bench_wan

        rest = ["--gpu" if args.gpu else "--cpu"] + (
            ["--write", str(args.write)] if args.write else []
        )
        return bench_wan.main(rest + (["--note", args.note] if args.note else []))

    if args.child:
        from storyshade import allocator

        allocator.configure()  # as every storyshade entry point does, before the models
        print(json.dumps(measure(Case(**json.loads(args.child)))), flush=True)
        return 0
    if args.results:
        lines = args.results.read_text(encoding="utf-8").splitlines()
        results = [json.loads(line) for line in lines if line.startswith("{")]
    else:
        results = run_all(args)
    if args.save:
        args.save.write_text("".join(json.dumps(r) + "\n" for r in results), encoding="utf-8")
    main_rows = [r for r in results if r.get("lever", "") in ("", "off")]
    lever_rows = [r for r in results if r.get("lever") or r["engine"] == "stock"]
    has_levers = any(r.get("lever", "") not in ("", "off") for r in results)
    note = f"\n{args.note}\n" if args.note else ""
    plain = [r for r in lever_rows if r["engine"] == "stock" or r.get("lever") == "off"]
    levers = f"{describe(plain)}\n{levers_table(lever_rows)}\n{note}" if has_levers else ""
    report = "" if args.levers else f"{describe(main_rows)}\n{table(main_rows)}\n{note}"
    print(report + (f"\n{LEVERS_HEADING}\n\n{levers}" if levers else ""))
    if args.write and levers:
        gpu = results[0]["device"].startswith("cuda")
        write_section(args.write, f"{LEVERS_HEADING} ({'GPU' if gpu else 'CPU'})", levers)
    if args.write and report:
        gpu = results[0]["device"].startswith("cuda")
        only_render = all(r["engine"] == "render" for r in results)
        heading = INPUTS_HEADING if only_render and not gpu else GPU_HEADING if gpu else CPU_HEADING
        write_section(args.write, heading, report)
    return 0


def run_all(args: argparse.Namespace) -> list[dict]:
    shape = SD15 if args.gpu else SMALL
    frames = args.frames or (
        [16, 64] if args.gpu else [16] if args.levers else [16, 32, 64, 128, 256]
    )
    spec = (
        dict(width=512, height=512, steps=20, device="cuda", dtype="float16")
        if args.gpu
        else dict(
            width=256, height=256, steps=6 if args.levers else 2, device="cpu", dtype="float32"
        )
    )
    if args.size:
        spec.update(width=args.size, height=args.size)
    if args.steps:
        spec.update(steps=args.steps)
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        models = args.models or write_models(Path(tmp), shape)
        if args.models and not (models / "checkpoints" / NAMES["checkpoint"]).exists():
            write_models(models, shape)
        cases = [
            Case(
                engine=e,
                frames=n,
                models=str(models),
                threads=args.threads,
                pass_size=args.pass_size if e in ("bundle", "render") else 0,
                lever="off" if e == "windowed" and args.gpu else "",
                **spec,
            )
            for n in frames
            for e in args.engines
        ]
        if args.levers:  # the levers rows, stock and "off" included, at each frame count
            cases = [c for n in frames for c in lever_cases(models, n, spec, args.threads)]
        elif args.gpu:  # the levers at the shortest shot: "off" and stock are rows above
            cases += [
                c
                for c in lever_cases(models, frames[0], spec, args.threads)
                if c.lever not in ("", "off", "step_cache 3")  # within ~5 minutes
            ]
        # --parallel 2 runs both engines of a frame count side by side: same machine load
        # for the pair, half the wall time. Peaks are per process, so they do not mix.
        results = []
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            for result in pool.map(lambda c: run_child(c, args.timeout), cases):
                results.append(result)
                print(json.dumps(result), file=sys.stderr, flush=True)
    return results


if __name__ == "__main__":
    raise SystemExit(main())
