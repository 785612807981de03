"""`storyshade controls BUNDLE --out DIR`: the control images a render would use, on disk."""

from __future__ import annotations

import argparse
from pathlib import Path

from storyshade.controls.build import LINE_ROLES


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not WIDTHxHEIGHT, e.g. 704x384") from None
    return w, h


def _roles(text: str) -> tuple[str, ...]:
    roles = tuple(r.strip() for r in text.split(",") if r.strip())
    bad = [r for r in roles if r not in LINE_ROLES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown line role(s) {bad}; use {', '.join(LINE_ROLES)}")
    return roles


def cmd_controls(args: argparse.Namespace) -> int:
    from storyshade.bundle import load_bundle
    from storyshade.controls.build import build_controls
    from storyshade.controls.inspect import write_controls
    from storyshade.controls.sizing import suggest_generation_size
    from storyshade.presets import resolve
    from storyshade.progress_bar import TerminalProgress

    bundle = load_bundle(args.bundle)
    overrides: dict = {}
    if args.size:
        overrides["width"], overrides["height"] = args.size
    if args.depth_range:
        overrides["depth_range"] = args.depth_range
    if args.near is not None:
        overrides["depth_near"] = args.near
    if args.far is not None:
        overrides["depth_far"] = args.far
    if args.normal:
        overrides["normal_convention"] = args.normal
    settings = resolve(args.preset, overrides)
    with TerminalProgress() as bar:
        controls = build_controls(
            bundle, settings, bar.reporter(), roots=args.models, extra_roles=args.lines
        )
    out = Path(args.out)
    counts = write_controls(controls, out, bundle.shot.regions)
    meta = controls.meta
    print(
        f"wrote {', '.join(f'{n} {role}' for role, n in counts.items())} images, "
        f"contact_sheet.png and controls.json to {out}"
    )
    print(
        f"depth range ({meta['depth_range']}): near {meta['depth_near']:.4g}, "
        f"far {meta['depth_far']:.4g}; normals: {meta['normal_convention']}"
    )
    x, y, w, h = meta["content_box"]
    gw, gh = meta["generation_size"]
    print(
        f"render {bundle.width}x{bundle.height} -> generation {gw}x{gh}, picture at {w}x{h}+{x}+{y}"
    )
    if w * h < 0.9 * gw * gh:
        sw, sh = suggest_generation_size((bundle.width, bundle.height), gw * gh)
        print(
            f"note: {100 - 100 * w * h // (gw * gh)}% of each frame is padding; --size {sw}x{sh} fits this aspect"
        )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "controls",
        help="write the control images a render would use (depth, normal, lines) for inspection",
    )
    p.add_argument("bundle", help="bundle folder (with shot.json)")
    p.add_argument(
        "--out", required=True, help="output folder: DIR/<role>/NNNN.png and DIR/contact_sheet.png"
    )
    p.add_argument("--preset", help="comma-separated preset names, as for `storyshade render`")
    p.add_argument(
        "--models", action="append", metavar="DIR", help="models root (learned line detectors)"
    )
    p.add_argument(
        "--lines",
        type=_roles,
        default=(),
        metavar="ROLES",
        help=f"also derive these line controls (comma-separated: {', '.join(LINE_ROLES)})",
    )
    p.add_argument("--size", type=_size, metavar="WxH", help="generation size (multiples of 8)")
    p.add_argument("--depth-range", choices=["robust", "clip", "fixed"])
    p.add_argument("--near", type=float, help="depth_near for --depth-range fixed (scene units)")
    p.add_argument("--far", type=float, help="depth_far for --depth-range fixed (scene units)")
    p.add_argument("--normal", choices=["bae", "midas"], help="normal colour convention")
    p.set_defaults(func=cmd_controls)
