"""The `storyshade` command: serve, render, models, presets, controls.

Every failure the user can fix prints one line (problem and fix) and exits 2; a crash
is a bug and exits 1 with the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from storyshade import allocator
from storyshade.errors import StoryShadeError
from storyshade.models.cli import add_models_flag
from storyshade.settings_flags import add_setting_flags, setting_overrides

Handler = Callable[[argparse.Namespace], int]


def cmd_render(args: argparse.Namespace) -> int:
    from storyshade.bundle import load_bundle
    from storyshade.models.locate import model_roots
    from storyshade.presets import resolve
    from storyshade.progress_bar import TerminalProgress
    from storyshade.render import render_bundle

    bundle = load_bundle(args.bundle)
    settings = resolve(args.preset, setting_overrides(args))
    roots = model_roots(args.models)
    # say what is missing or refused before any work starts
    from storyshade.engines import Shot, check_job
    from storyshade.job_input import needs_models

    if needs_models(settings):
        from storyshade.models.loader import model_key

        model_key(roots, settings)
    if settings.references or settings.color_match:  # unreadable images fail now too
        from storyshade.references import check_references, resolve_paths

        check_references(resolve_paths(settings, bundle.root))
    check_job(settings, roots, Shot.of(bundle))
    with TerminalProgress() as bar:
        written = render_bundle(bundle, settings, Path(args.out), roots, reporter=bar.reporter())
    print(f"wrote {len(written)} frames to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="storyshade", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("render", help="render a shot bundle to PNG frames, no server needed")
    p.add_argument("bundle", help="bundle folder (with shot.json)")
    p.add_argument("--out", required=True, help="output folder: DIR/NNNN.png per scene frame")
    add_models_flag(p)
    p.add_argument("--preset", help="comma-separated preset names (`storyshade presets list`)")
    add_setting_flags(p)
    p.set_defaults(func=cmd_render)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Sub-commands that live beside the code they drive."""
    from storyshade.controls.cli import add_commands as controls_commands
    from storyshade.models.cli import add_commands as models_commands
    from storyshade.presets_cli import add_commands as presets_commands
    from storyshade.review import add_commands as review_commands
    from storyshade.server.cli import add_commands as server_commands
    from storyshade.settings_doc import add_commands as settings_commands

    return [
        server_commands,
        controls_commands,
        models_commands,
        presets_commands,
        settings_commands,
        review_commands,
    ]


def main(argv: list[str] | None = None) -> int:
    allocator.configure()  # before any large allocation: peak memory as measured
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StoryShadeError as exc:
        print(f"storyshade: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("storyshade: interrupted", file=sys.stderr)
        return 130
