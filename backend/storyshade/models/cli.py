"""`storyshade models list|check|tiny|pull`: what is on disk, what a preset still needs, and
(`pull`, models/pull_cli.py) fetching it."""

from __future__ import annotations

import argparse
from pathlib import Path

from storyshade.errors import StoryShadeError


def add_models_flag(p: argparse.ArgumentParser) -> None:
    """`--models DIR` (repeatable), the same on every command that finds models."""
    p.add_argument(
        "--models",
        action="append",
        metavar="DIR",
        help="models root (repeatable); also $STORYSHADE_MODELS",
    )


def _detail(found) -> str:
    from storyshade.models.arch import adapter_arch, checkpoint_arch, controlnet_arch, lora_arch
    from storyshade.models.ip_adapter import encoder_arch, ip_adapter_arch

    if found.refused:
        return f"REFUSED ({found.refused}): convert to .safetensors (docs/models.md)"
    if found.note.startswith("Wan "):  # Wan LoRAs and single files: the note says it all
        return found.note
    try:
        if found.kind == "checkpoint" and found.note == "Wan":
            from storyshade.models.wan_arch import wan_arch

            return wan_arch(found.path).describe()
        if found.kind == "checkpoint":
            return checkpoint_arch(found.path).describe()
        if found.kind == "controlnet":
            return controlnet_arch(found.path).describe()
        if found.kind == "motion_adapter":
            return adapter_arch(found.path).describe()
        if found.kind == "lora":
            return lora_arch(found.path).describe()
        if found.kind == "ip_adapter":
            return ip_adapter_arch(found.path).describe()
        if found.kind == "image_encoder":
            return encoder_arch(found.path).describe()
    except StoryShadeError as exc:
        return f"unreadable: {exc.problem}"
    return found.note


def cmd_list(args: argparse.Namespace) -> int:
    from storyshade.models.discover import discover, search_roots
    from storyshade.models.locate import model_roots

    roots = model_roots(args.models)
    searched = search_roots(roots)
    print("searched: " + (", ".join(map(str, searched)) or "nothing (no --models, no cache)"))
    items = [f for f in discover(roots) if args.all or f.kind not in ("unknown",) or f.refused]
    if args.kind:
        items = [f for f in items if f.kind == args.kind]
    for f in items:
        name = f.repo_id if f.repo_id and f.layout == "hf-cache" else f.name
        print(f"{f.kind:15s} {name:45s} {f.layout:11s} {_detail(f)}")
        print(f"{'':15s} {f.path}")
    if not items:
        print("no models found; `storyshade models tiny DIR` writes a tiny test set")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from storyshade.models.check import check_preset
    from storyshade.models.locate import model_roots
    from storyshade.presets import resolve

    overrides = {}
    if args.reference:
        from storyshade.wire.references import parse_reference_arg

        overrides["references"] = [parse_reference_arg(r) for r in args.reference]
    settings = resolve(args.preset, overrides)
    roots = model_roots(args.models)
    report = check_preset(roots, settings)
    print(report.text())
    if any("models pull" in n.fix for n in report.needs):
        from storyshade.wire.layering import DEFAULTS

        where = f" --models {roots[0]}" if roots else ""
        spec = args.preset or DEFAULTS["style"]  # one preset over the default layers
        print(f"all at once: storyshade models pull {spec}{where}")
    return 0 if report.ok else 2


def cmd_tiny(args: argparse.Namespace) -> int:
    from storyshade.models.tiny import write_tiny_models, write_tiny_single_files
    from storyshade.models.tiny_wan import write_tiny_wan_models

    paths = write_tiny_models(args.dir)
    paths.update(write_tiny_wan_models(args.dir))
    if args.single_file:
        singles = write_tiny_single_files(args.dir)
        paths.update({f"{k} (file)": v for k, v in singles.items()})
    for role, path in paths.items():
        print(f"{role:22s} {path}")
    print(
        f"tiny random-weight models written; use --models {Path(args.dir)} --preset tiny "
        "(or --preset wan-tiny for the Wan VACE engine)"
    )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    from storyshade.models.discover import KINDS

    models = sub.add_parser("models", help="find, check and pull models").add_subparsers(
        dest="models_command", required=True
    )
    p = models.add_parser("list", help="every model found under the roots and the HF cache")
    add_models_flag(p)
    p.add_argument("--kind", choices=KINDS)
    p.add_argument("--all", action="store_true", help="also list unrecognised files")
    p.set_defaults(func=cmd_list)
    p = models.add_parser(
        "check", help="what PRESET needs, what is present, missing, or mismatched"
    )
    p.add_argument("preset", nargs="?", help="comma-separated preset names (default: the defaults)")
    add_models_flag(p)
    p.add_argument(
        "--reference",
        action="append",
        metavar="IMG[:WEIGHT]",
        help="also check the IP-Adapter and image encoder that references need",
    )
    p.set_defaults(func=cmd_check)
    p = models.add_parser("tiny", help="write tiny random-weight test models into DIR")
    p.add_argument("dir")
    p.add_argument("--single-file", action="store_true", help="also write single-file versions")
    p.set_defaults(func=cmd_tiny)
    from storyshade.models.pull_cli import add_pull_arguments

    p = models.add_parser(
        "pull",
        help="download what presets or models need (the only command that downloads)",
        description="Download exactly the files the named presets' models need (or the named "
        "models) into the first --models folder, in the layout discovery reads.",
    )
    add_models_flag(p)
    add_pull_arguments(p)
