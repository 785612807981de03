"""The Wan VACE engine: time against diffusers' WanVACEPipeline, each lever's ratio, and
peak memory at 321 frames against 81, in child processes.

Models: random weights in the Wan 2.1 VACE diffusers layout, written once to a temporary
folder and loaded through storyshade's own loader. `--gpu` uses the 1.3B's shapes
(transformer width 1536, 30 layers, 15 VACE layers; the real VAE's shape; a one-layer
UMT5 of the real width, since the text encoder runs once per job and is not what is
timed here), at 832x480, 81 frames, 30 steps, CFG 5; `--cpu` a small model of the same
family on the CPU (`--tiny`: the tiny test set's shapes, to check the script itself).

Rows: "ours" (wan-vace, levers off) and "stock" (WanVACEPipeline) at the full settings;
each lever (first-block cache, TaylorSeer, compile, model offload, group offload) against
"ours" at `--lever-steps` steps; and memory: the real render path (`render_bundle` from
a bundle of EXR passes on disk, inputs included) at 81 and 321 frames, at 2 steps.

    python benchmarks/bench_engine.py --gpu --engine wan-vace      # about 5 min on one GPU
    python benchmarks/bench_wan.py --cpu --write BENCHMARKS.md     # CPU ratios
    python benchmarks/bench_wan.py --cpu --tiny                    # the script, in a minute
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "backend"))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import harness  # noqa: E402

HEADING = "## Wan VACE engine: windowed vs stock WanVACEPipeline"
NAME = "bench-wan-vace"


@dataclass(frozen=True)
class WanShape:
    heads: int
    head_dim: int
    ffn: int
    layers: int
    vace_layers: tuple[int, ...]
    text_dim: int
    vae_base: int
    vae_mult: tuple[int, ...]
    vae_blocks: int


WAN13B = WanShape(12, 128, 8960, 30, tuple(range(0, 30, 2)), 4096, 96, (1, 2, 4, 4), 2)
SMALL = WanShape(4, 32, 256, 6, (0, 2, 4), 256, 16, (1, 2, 2, 2), 1)
TINY = WanShape(2, 12, 32, 3, (0, 2), 32, 3, (1, 1, 1, 1), 1)


def write_models(root: Path, shape: WanShape, seed: int = 0, half: bool = False) -> Path:
    """A random Wan VACE checkpoint of `shape` in diffusers layout under root/checkpoints
    (`half`: the transformer and text encoder saved in bfloat16, half the bytes to write
    and read for the 1.3B's shapes; the VAE stays float32 as the engine loads it)."""
    import torch
    from diffusers import AutoencoderKLWan, WanVACEPipeline, WanVACETransformer3DModel
    from storyshade.models.tiny_wan import flow_scheduler, tiny_wan_tokenizer
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    tokenizer = tiny_wan_tokenizer()
    text = UMT5EncoderModel(
        UMT5Config(
            vocab_size=len(tokenizer),
            d_model=shape.text_dim,
            d_kv=64,
            d_ff=256,
            num_layers=1,
            num_heads=max(1, shape.text_dim // 64),
            relative_attention_num_buckets=32,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    transformer = WanVACETransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=shape.heads,
        attention_head_dim=shape.head_dim,
        in_channels=16,
        out_channels=16,
        text_dim=shape.text_dim,
        freq_dim=256,
        ffn_dim=shape.ffn,
        num_layers=shape.layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=1024,
        vace_layers=list(shape.vace_layers),
        vace_in_channels=96,
    )
    vae = AutoencoderKLWan(
        base_dim=shape.vae_base,
        z_dim=16,
        dim_mult=list(shape.vae_mult),
        num_res_blocks=shape.vae_blocks,
        temperal_downsample=[False, True, True],
    )
    if half:
        transformer.to(torch.bfloat16)
        text.to(torch.bfloat16)
    dest = root / "checkpoints" / NAME
    WanVACEPipeline(
        tokenizer=tokenizer,
        text_encoder=text,
        vae=vae,
        scheduler=flow_scheduler(),
        transformer=transformer,
    ).save_pretrained(dest, safe_serialization=True)
    return root


@dataclass
class WanCase:
    kind: str  # "ours" | "stock" | "render"
    frames: int
    models: str
    width: int
    height: int
    steps: int
    device: str
    dtype: str
    guidance: float = 5.0
    window: int = 81
    overlap: int = 16
    threads: int = 1
    extra: dict = field(default_factory=dict)  # Settings fields (the levers)
    lever: str = ""
    repeat: int = 1


def settings_for(case: WanCase):
    from storyshade.settings import Settings

    return Settings(
        engine="wan-vace",
        checkpoint=NAME,
        controls={
            "depth": {"model": "vace", "scale": 1.0},
            "normal": {"model": "vace", "scale": 0.0},
        },
        prompt="a storyboard frame, cinematic lighting",
        negative_prompt="blurry",
        width=case.width,
        height=case.height,
        steps=case.steps,
        guidance_scale=case.guidance,
        wan_window=case.window,
        wan_overlap=case.overlap,
        device=case.device,
        dtype=case.dtype,
        preview_every=0,
        **case.extra,
    )


def measure(case: WanCase) -> dict:
    """One measurement in this (fresh) process: seconds and peak memory of the render."""
    import torch

    torch.set_num_threads(case.threads)
    from storyshade.controls import ControlSet
    from storyshade.engine.wan_stock import stock_call
    from storyshade.engine.wan_vace import WanVaceEngine
    from storyshade.models.loader import ModelCache, model_key
    from storyshade.progress import Reporter

    settings = settings_for(case)
    roots = [Path(case.models)]
    cache = ModelCache()
    pipe = cache.get(model_key(roots, settings))
    if case.kind == "render":
        return _measure_render(case, settings, roots, cache)
    frames = harness.synthetic_controls(case.frames, case.width, case.height, ["depth", "normal"])
    controls = ControlSet(frames=frames, frame_numbers=list(range(case.frames)))
    harness.reset_peak(case.device)
    runs = []
    for _ in range(case.repeat):
        start = time.perf_counter()
        if case.kind == "ours":
            count = sum(
                1 for _ in WanVaceEngine(roots, cache).render(controls, settings, Reporter())
            )
        else:
            generator = torch.Generator("cpu").manual_seed(0)
            out = stock_call(pipe, controls, settings, generator=generator, output_type="np")
            count = len(out.frames[0])
        if case.device.startswith("cuda"):
            torch.cuda.synchronize()
        runs.append(time.perf_counter() - start)
    return {
        **asdict(case),
        "count": count,
        # compile: the warm render; otherwise the quickest (the least disturbed by other load)
        "seconds": runs[-1] if case.extra.get("compile") else min(runs),
        "first_seconds": runs[0],
        "peak_mib": harness.peak_mib(case.device),
    }


def _measure_render(case: WanCase, settings, roots: list[Path], cache) -> dict:
    """The real render path from a bundle on disk: the peak includes the inputs."""
    import torch
    from storyshade.bundle import load_bundle
    from storyshade.progress import Reporter
    from storyshade.render import render_bundle

    with tempfile.TemporaryDirectory(prefix="bench-wan-render-") as tmp:
        root = harness.write_bundle(Path(tmp) / "bundle", case.frames, case.width, case.height)
        bundle = load_bundle(root)
        harness.reset_peak(case.device)
        start = time.perf_counter()
        written = render_bundle(bundle, settings, Path(tmp) / "out", roots, cache, Reporter())
        if case.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {
        **asdict(case),
        "count": len(written),
        "seconds": seconds,
        "peak_mib": harness.peak_mib(case.device),
    }


def run_child(case: WanCase, timeout: float) -> dict:
    return harness.measure_in_child(__file__, asdict(case), case.threads, timeout)


LEVERS: dict[str, tuple[dict, int]] = {
    "off": ({}, 1),
    "first-block cache 0.05": ({"wan_cache": "first_block", "wan_cache_threshold": 0.05}, 1),
    "TaylorSeer every 4": ({"wan_cache": "taylorseer", "wan_cache_interval": 4}, 1),
    "compile": ({"compile": "on"}, 2),
    "model offload": ({"wan_offload": "model"}, 1),
    "group offload": ({"wan_offload": "group"}, 1),
}


def cases(models: Path, args: argparse.Namespace) -> list[WanCase]:
    gpu = args.gpu
    spec = {
        "models": str(models),
        "width": args.size[0],
        "height": args.size[1],
        "device": "cuda" if gpu else "cpu",
        "dtype": "bfloat16" if gpu else "float32",
        "window": args.window,
        "overlap": args.overlap,
        "threads": args.threads,
    }
    twice = 1 if gpu else 2  # a shared CPU's load comes and goes: the quicker of two runs
    out = [
        WanCase("ours", args.frames, steps=args.steps, lever="ours", repeat=twice, **spec),
        WanCase("stock", args.frames, steps=args.steps, lever="stock", repeat=twice, **spec),
    ]
    for name, (extra, repeat) in LEVERS.items():
        if not gpu and ("offload" in name or name == "compile"):
            continue  # offload moves nothing on the CPU; compile is measured on CUDA
        out.append(
            WanCase(
                "ours",
                args.frames,
                steps=args.lever_steps,
                extra=extra,
                lever=name,
                repeat=repeat,
                **spec,
            )
        )
    for n in args.memory_frames:
        out.append(WanCase("render", n, steps=2, lever=f"memory {n}", **spec))
    return out


def table(results: list[dict]) -> str:
    ok = {r["lever"]: r for r in results if "error" not in r}
    lines = [
        "| row | frames | steps | seconds per shot | vs ours (levers off) | vs stock | peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    ours, stock, off = ok.get("ours"), ok.get("stock"), ok.get("off")
    for r in results:
        if "error" in r:
            lines.append(
                f"| {r['lever']} | {r['frames']} | {r['steps']} | failed: {r['error'][:100]} | | | |"
            )
            continue
        base = off if r["lever"] in LEVERS else ours
        vs = f"{r['seconds'] / base['seconds']:.2f}" if base and r["kind"] != "render" else "-"
        vs_stock = (
            f"{r['seconds'] / stock['seconds']:.2f}"
            if stock and r["lever"] in ("ours", "stock")
            else "-"
        )
        lines.append(
            f"| {r['lever']} | {r['frames']} | {r['steps']} | {r['seconds']:.1f} | {vs} | {vs_stock} "
            f"| {r['peak_mib']:.0f} |"
        )
    memory = sorted((r for r in ok.values() if r["kind"] == "render"), key=lambda r: r["frames"])
    if len(memory) >= 2:
        growth = memory[-1]["peak_mib"] / memory[0]["peak_mib"]
        verdict = "met" if growth <= 1.05 else "missed"
        lines += [
            "",
            f"Memory incl. inputs (the real render path): peak at {memory[-1]['frames']} frames "
            f"is {growth:.3f}x its peak at {memory[0]['frames']} (target <= 1.05x): {verdict}.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--gpu", action="store_true", help="CUDA: 1.3B shapes, 832x480, 81 frames")
    mode.add_argument("--cpu", action="store_true", help="CPU: a small Wan-shaped model")
    mode.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--tiny", action="store_true", help="the tiny set's shapes (a script check)"
    )
    parser.add_argument("--frames", type=int, help="frames of the timed shot")
    parser.add_argument("--size", type=int, nargs=2, metavar=("W", "H"))
    parser.add_argument("--steps", type=int)
    parser.add_argument("--lever-steps", type=int)
    parser.add_argument("--window", type=int, default=81)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--memory-frames", type=int, nargs="*")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--only", nargs="*", choices=["main", "levers", "memory"], help="run only these rows"
    )
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--write", type=Path, help="update this file's Wan section")
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(WanCase(**json.loads(args.child)))), flush=True)
        return 0
    gpu = args.gpu
    shape = TINY if args.tiny else WAN13B if gpu else SMALL
    args.frames = args.frames or (81 if gpu else 33)
    args.size = args.size or ((832, 480) if gpu else (128, 96) if not args.tiny else (64, 64))
    args.steps = args.steps or (30 if gpu else 4)
    args.lever_steps = args.lever_steps or (10 if gpu else 8)
    if args.memory_frames is None:
        args.memory_frames = [81, 321]
    if args.tiny:
        args.window, args.overlap = 9, 4
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-wan-models-") as tmp:
        models = write_models(Path(tmp), shape, half=gpu)
        results = []
        for case in cases(models, args):
            part = (
                "memory" if case.kind == "render" else "levers" if case.lever in LEVERS else "main"
            )
            if args.only and part not in args.only:
                continue
            result = run_child(case, args.timeout)
            results.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
    r = results[0]
    setting = (
        f"Random weights: transformer width {shape.heads * shape.head_dim}, {shape.layers} layers, "
        f"{len(shape.vace_layers)} VACE layers; {r['width']}x{r['height']}, {r['frames']} frames, "
        f"windows {args.window}/{args.overlap} frames, CFG {r['guidance']}, {r['device']} {r['dtype']}"
        + ("" if gpu else f", {args.threads} CPU thread(s)")
        + f". Whole run {time.time() - started:.0f} s."
    )
    report = f"{setting}\n\n{table(results)}\n" + (f"\n{args.note}\n" if args.note else "")
    print(report)
    if args.write:
        write(args.write, gpu, report)
    return 0


INTRO = (
    "Produced by `benchmarks/bench_wan.py` (on a GPU: `python benchmarks/bench_engine.py --gpu "
    "--engine wan-vace`); every row is its own child process. Seconds per shot are the render "
    "call after loading (text encoding, VAE encoding of the control video, denoising, "
    "decoding); peak is VRAM on CUDA, the resident set on the CPU. Lever rows are timed "
    "against 'off' at the same (fewer) steps.\n"
)


def write(path: Path, gpu: bool, report: str) -> None:
    """Replace this benchmark's CPU or GPU part of `path`'s Wan section."""
    heading = "### GPU, Wan 2.1 VACE 1.3B-sized" if gpu else "### CPU, small Wan VACE-shaped model"
    harness.write_section(path, HEADING, heading, report, INTRO)


if __name__ == "__main__":
    raise SystemExit(main())
