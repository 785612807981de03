"""Headless entry: `blender -b shot.blend -c storyshade shade|export ...`.

`main(argv) -> int` is the registered CLI command; the return value is Blender's exit
code: 0 on success, 1 with a one-line reason on failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import bpy

from . import export, take
from .client import DEFAULT_URL, Client
from .errors import StoryShadeError
from .shade import TakeRun, follow_job, remove_bundle, submit_bundle, temp_bundle_dir


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would sys.exit inside Blender
        raise StoryShadeError(
            message, f"see `blender -c storyshade {self.prog.split()[-1]} --help`"
        )


def parse_frames(text: str | None) -> tuple[int | None, int | None]:
    if not text:
        return None, None
    try:
        a, _, b = text.partition("-")
        start, end = int(a), int(b or a)
    except ValueError:
        raise StoryShadeError(
            f"--frames '{text}' is not a range", "write it as A-B, e.g. 1-48"
        ) from None
    return start, end


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="storyshade", description="StoryShade headless commands")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("shade", help="export, shade on the server, add the take strip, save")
    p.add_argument("--server", default=None, help=f"server URL (default {DEFAULT_URL})")
    p.add_argument("--token", default=None, help="server token (or $STORYSHADE_TOKEN)")
    p.add_argument("--frames", help="frame range A-B (default: the scene's)")
    p.add_argument("--preset", help="comma-separated preset names, e.g. anime-cel,draft")
    p.add_argument("--prompt", help="added to the preset's prompt")
    p.add_argument("--seed", type=int)
    p.add_argument("--settings", help="JSON object of setting overrides")
    p.add_argument("--no-save", action="store_true", help="do not save the .blend afterwards")
    p = sub.add_parser("export", help="write a shot bundle (depth/normal EXR + shot.json)")
    p.add_argument("--out", required=True)
    p.add_argument("--frames")
    return parser


def _settings(args: argparse.Namespace) -> dict:
    settings: dict = {}
    if args.settings:
        try:
            settings = json.loads(args.settings)
        except ValueError as exc:
            raise StoryShadeError(f"--settings is not JSON ({exc})") from None
        if not isinstance(settings, dict):
            raise StoryShadeError("--settings must be a JSON object")
    if args.preset:
        settings["preset"] = args.preset
    if args.prompt:
        settings["prompt"] = args.prompt
    if args.seed is not None:
        settings["seed"] = args.seed
    return settings


def _say(text: str) -> None:
    print(f"storyshade: {text}", flush=True)


def run_export(args: argparse.Namespace) -> int:
    scene = bpy.context.scene
    start, end = parse_frames(args.frames)
    for done, total in export.iter_export(scene, Path(args.out), start, end):
        _say(f"Exporting {done}/{total}")
    _say(f"bundle written to {args.out}")
    return 0


def run_shade(args: argparse.Namespace) -> int:
    scene = bpy.context.scene
    start, end = parse_frames(args.frames)
    export.check_scene(scene)
    start, end = export.frame_range(scene, start, end)
    client = Client(args.server or DEFAULT_URL, args.token)
    client.health()  # fail fast, before minutes of export, if no server is there
    shot = export.shot_name(scene)
    bundle_dir = temp_bundle_dir()
    try:
        for done, total in export.iter_export(scene, bundle_dir, start, end):
            _say(f"Exporting {done}/{total}")
        folder, take_name, temporary = take.next_take_dir(shot)
        if temporary:
            _say(f"the .blend is not saved; frames go to the temporary folder {folder}")
        run = TakeRun(shot, take_name, folder, temporary, list(range(start, end + 1)))
        run.settings = _settings(args)
        submit_bundle(client, bundle_dir, run)
    finally:
        remove_bundle(bundle_dir)
    _say(f"job {run.job_id} submitted")
    last = [""]

    def progress(text: str) -> None:
        if text != last[0]:
            last[0] = text
            _say(text)

    follow_job(client, run, progress)
    strip = take.add_take_strip(
        scene, folder, run.frames, shot, take_name, {"job": run.job_id, "settings": run.settings}
    )
    _say(f"take strip '{strip.name}' on channel {strip.channel}, frames {start}-{end}")
    if not args.no_save:
        if bpy.data.filepath:
            bpy.ops.wm.save_mainfile()
            _say(f"saved {bpy.data.filepath}")
        else:
            _say("the .blend has never been saved; not saving (give a .blend on the command line)")
    return 0


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(list(argv))
        return run_shade(args) if args.command == "shade" else run_export(args)
    except StoryShadeError as exc:
        print(f"storyshade: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
