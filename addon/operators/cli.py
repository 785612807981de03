"""Headless entry: `blender -b shot.blend -c storyshade shade|reattach|export ...`.

`main(argv) -> int` is the registered CLI command; the return value is Blender's exit
code: 0 on success, 2 for a bad input the user can fix (a missing or refused reference image,
a malformed character), 1 with a one-line reason for any other failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import bpy

from ..errors import InputError, StoryShadeError
from ..export import bundle
from ..looks.looks_file import load_looks_file
from ..looks.reference_files import check_image
from ..looks.references import style_of
from ..remote.client import DEFAULT_URL, Client
from ..session import shots
from ..session.build import reshade_request, shade_request
from ..session.sequence import SequenceRun, shot_request, shot_settings
from ..session.shade import DONE, ShadeRequest, ShadeSession
from ..settings import prefs, props, request_settings
from ..settings.request_settings import Choices
from ..takes import reshade, take
from ..wire.layering import parse_names
from ..wire.references import parse_reference_arg


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
    p.add_argument(
        "--take",
        metavar="NAME",
        help="re-shade --frames A-B of this take strip: only A-B are made again, with the "
        "take's settings (plus any given here); a new take shares its other frames",
    )
    p.add_argument(
        "--all-shots",
        action="store_true",
        help="shade every shot of the edit (camera markers or scene strips), one job each",
    )
    p.add_argument("--shots", help="comma-separated shot names to shade (see --all-shots)")
    p.add_argument(
        "--seed-policy",
        choices=("same", "per-shot"),
        default="same",
        help="with --all-shots/--shots: one seed for every shot (default), or a seed per shot "
        "made from --seed and the shot's name",
    )
    p.add_argument("--preset", help="comma-separated preset names, e.g. anime-cel,draft")
    p.add_argument(
        "--prompt", help="the prompt, wrapped in the style's words (replaces the sidebar's)"
    )
    p.add_argument(
        "--negative-prompt",
        help="added after the presets' negative prompt (replaces the sidebar's)",
    )
    p.add_argument("--seed", type=int)
    p.add_argument("--settings", help="JSON object of setting overrides")
    p.add_argument(
        "--reference",
        action="append",
        metavar="IMG[:WEIGHT][@LOOK]",
        help="reference image (repeatable, up to 4; weight 0-2, default 0.8), for the whole "
        "frame or only inside look LOOK; replaces the .blend's references",
    )
    p.add_argument("--no-save", action="store_true", help="do not save the .blend afterwards")
    p.add_argument(
        "--looks",
        metavar="LOOKS.json",
        help='per-object looks: {"objects": {NAME: {"prompt": ...}}, "collections": {...}}',
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--keep",
        dest="take_mode",
        action="store_const",
        const=take.KEEP,
        help="add the take above the shot's earlier takes (default)",
    )
    mode.add_argument(
        "--replace",
        dest="take_mode",
        action="store_const",
        const=take.REPLACE,
        help="the new take strip replaces the shot's earlier take strips (files stay)",
    )
    p.add_argument(
        "--output",
        help="take folder pattern, e.g. //storyshade/{shot}/{take} (default: preferences)",
    )
    p = sub.add_parser(
        "reattach", help="follow the shot's job left running on the server, add its take, save"
    )
    p.add_argument("--server", default=None, help=f"server URL (default {DEFAULT_URL})")
    p.add_argument("--token", default=None, help="server token (or $STORYSHADE_TOKEN)")
    p.add_argument("--output", help="take folder pattern (default: preferences)")
    p.add_argument("--no-save", action="store_true", help="do not save the .blend afterwards")
    p = sub.add_parser("export", help="write a shot bundle (depth/normal EXR + shot.json)")
    p.add_argument("--out", required=True)
    p.add_argument("--frames")
    p.add_argument("--scene", help="the scene to export (default: the file's current one)")
    p.add_argument("--shot", help="the shot's name in the bundle (default: from the file)")
    p.add_argument("--camera", help="a camera object that replaces the scene's for every frame")
    p.add_argument(
        "--looks",
        metavar="LOOKS.json",
        help='per-object looks: {"objects": {NAME: {"prompt": ...}}, "collections": {...}}',
    )
    return parser


def _given(args: argparse.Namespace, choices: Choices) -> Choices:
    """`choices` with the flags that were given over them (each replaces its field)."""
    out = replace(choices)
    if args.settings:
        try:
            raw = json.loads(args.settings)
        except ValueError as exc:
            raise InputError(f"--settings is not JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise InputError("--settings must be a JSON object")
        out.raw = raw
    if args.preset is not None:  # like the sidebar's Extra Presets: each replaces its layer's
        out.extra = parse_names(args.preset)
    if args.prompt is not None:
        out.prompt = args.prompt
    if args.negative_prompt is not None:
        out.negative_prompt = args.negative_prompt
    if args.seed is not None:
        out.seed = args.seed
    if args.reference:  # checked with the shot's looks when its session starts
        out.references = [parse_reference_arg(text) for text in args.reference]
    return out


def _choices(args: argparse.Namespace, scene) -> Choices:
    """What the .blend's sidebar says, with the flags given over it."""
    return _given(args, props.choices(scene.storyshade))


def _settings(args: argparse.Namespace, scene) -> dict:
    """The settings JSON a `shade` of `scene` with these flags sends."""
    return request_settings.build(_choices(args, scene))


def _take_overrides(args: argparse.Namespace, scene) -> dict:
    """--take: the take's own settings change only where a flag was given."""
    strip = reshade.find_take(scene, args.take)
    stored = parse_names(take.strip_settings(strip).get("preset"))
    out = request_settings.build(_given(args, Choices(picks=stored)))
    if args.preset is None:
        out.pop("preset", None)
    return out


def _say(text: str) -> None:
    print(f"storyshade: {text}", flush=True)


def _looks(args: argparse.Namespace, scene):
    return load_looks_file(args.looks, scene) if args.looks else None


def run_export(args: argparse.Namespace) -> int:
    scene = bpy.context.scene
    if args.scene:
        scene = bpy.data.scenes.get(args.scene)
        if scene is None:
            names = ", ".join(s.name for s in bpy.data.scenes)
            raise StoryShadeError(f"there is no scene '{args.scene}'", f"pick one of: {names}")
    start, end = parse_frames(args.frames)
    first, last = bundle.frame_range(scene, start, end)
    _say(f"Exporting 0/{last - first + 1}")  # Blender is up: frames start rendering now
    frames = bundle.iter_export(
        scene, Path(args.out), start, end, _looks(args, scene), shot=args.shot, camera=args.camera
    )
    for done, total in frames:
        _say(f"Exporting {done}/{total}")
    _say(f"bundle written to {args.out}")
    return 0


def _request(
    args: argparse.Namespace, scene, url: str, frames=None, choices=None, **shot
) -> ShadeRequest:
    """The request the sidebar of `scene` would make, with the flags over it."""
    return shade_request(
        scene,
        url,
        choices=choices if choices is not None else _choices(args, scene),
        frames=frames,
        take_mode=args.take_mode,
        output_pattern=args.output,
        looks=_looks(args, scene),
        **shot,
    )


def build_request(args: argparse.Namespace, scene, url: str) -> ShadeRequest:
    """What `shade` (one shot, or --take) asks for: the sidebar's request with the flags
    over it, as the panel's Shade and Re-shade Frames build it."""
    start, end = parse_frames(args.frames)
    if not args.take:
        return _request(args, scene, url, (start, end) if start is not None else None)
    if start is None:
        raise StoryShadeError("--take needs --frames A-B: the frames to shade again")
    again = reshade.plan(scene, args.take, start, end, _take_overrides(args, scene))
    request = reshade_request(scene, url, again, args.take_mode, args.output)
    request.looks = _looks(args, scene) or request.looks
    _say(
        f"re-shading frames {again.start}-{again.end} of {again.strip} "
        f"(exporting {again.span[0]}-{again.span[1]}; the rest is copied)"
    )
    return request


def run_shade(args: argparse.Namespace) -> int:
    scene = bpy.context.scene
    url = args.server or prefs.server()[0] or DEFAULT_URL
    token = args.token or prefs.server()[1]
    if args.all_shots or args.shots:
        if args.frames or args.take:
            raise StoryShadeError("--frames/--take and --all-shots/--shots do not go together")
        for ref in _choices(args, scene).references or []:
            check_image(ref["image"])  # a wrong file stops the sequence before its first shot
        return run_shots(args, scene, Client(url, token), url)
    request = build_request(args, scene, url)
    _run_session(ShadeSession(scene, Client(url, token), request))
    _save(args)
    return 0


def run_shots(args: argparse.Namespace, edit_scene, client: Client, url: str) -> int:
    """Shade the edit's shots one after another, each into its own scene; 0 when all
    succeed, else 1 with the shots that failed named (the others keep their takes)."""
    found = shots.find_shots(edit_scene)
    chosen = shots.pick(found, [n.strip() for n in (args.shots or "").split(",") if n.strip()])
    for text in found.notes:
        _say(f"note: {text} (not a shot)")

    policy = args.seed_policy.upper().replace("-", "_")

    choices = _choices(args, edit_scene)  # the edit's sidebar, for every shot (as the panel)

    def session_for(shot: shots.Shot) -> ShadeSession:
        scene = bpy.data.scenes[shot.scene_name]
        request = _request(
            args, scene, url, choices=choices, sidebar=edit_scene, **shot_request(shot)
        )
        request.settings = shot_settings(request.settings, shot, policy)
        request.style_references = style_of(edit_scene)  # the edit's, in every shot's scene
        return ShadeSession(scene, client, request)

    run = SequenceRun(chosen, session_for)
    stages = StagePrinter()
    said = {"index": -1}

    def progress(seq: SequenceRun) -> None:
        if seq.index != said["index"] and seq.shot is not None and seq.running:
            said["index"] = seq.index
            stages.reset()
            shot = seq.shot
            left = seq.eta()
            _say(
                f"shot {seq.index + 1}/{len(seq.shots)} '{shot.name}': scene "
                f"'{shot.scene_name}', camera '{shot.camera}', frames {shot.frame_start}-"
                f"{shot.frame_end}" + (f", about {left:.0f} s left" if left else "")
            )
        if seq.current is not None and seq.shot is not None:
            stages.prefix = f"[{seq.shot.name}] "
            stages(seq.current)

    def shot_end(shot: shots.Shot, session: ShadeSession | None) -> None:
        if session is not None and session.outcome == DONE:
            _say(f"[{shot.name}] take strip '{session.strip_name}' on channel {session.channel}")
        else:
            why = session.text if session is not None else run.failed[-1][1]
            print(f"storyshade: shot '{shot.name}' failed: {why}", file=sys.stderr, flush=True)

    run.on_shot_end = shot_end
    run.run_blocking(progress)
    _say(f"{run.headline()} in {time.monotonic() - run.started:.0f} s")
    _save(args)
    if run.failed or run.cancelled:
        names = [name for name, _ in run.failed]
        raise StoryShadeError(
            f"{len(names)} of {len(chosen)} shots failed: {', '.join(names)}"
            if names
            else "the sequence was cancelled",
            "see each shot's error above; rerun them with --shots",
        )
    return 0


def run_reattach(args: argparse.Namespace) -> int:
    from ..session.build import reattach_session

    url = args.server or prefs.server()[0] or DEFAULT_URL
    token = args.token or prefs.server()[1]
    pattern = args.output or prefs.value("output_pattern", default=take.DEFAULT_PATTERN)
    session = reattach_session(bpy.context.scene, url, token, pattern, take.KEEP, {})
    _say(f"reattached to job {session.job_id}")
    _run_session(session)
    _save(args)
    return 0


class StagePrinter:
    """Prints a session's stage texts and notes once each, in order (a tick may pass
    several), after `prefix`; `reset` before following another session."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.reset()

    def reset(self) -> None:
        self.logged, self.note = 0, ""

    def __call__(self, session: ShadeSession) -> None:
        if session.note and session.note != self.note:
            self.note = session.note
            _say(self.prefix + session.note)
        for text in session.log[self.logged :]:
            _say(self.prefix + text)
        self.logged = len(session.log)


def _run_session(session: ShadeSession, prefix: str = "") -> None:
    """Run a session to its end, printing each stage once, and place the take."""
    session.run_blocking(StagePrinter(prefix))
    if session.error is not None:
        raise session.error
    if session.outcome != DONE:
        raise StoryShadeError(session.text)
    _say(
        f"{prefix}take strip '{session.strip_name}' on channel {session.channel}, "
        f"frames {session.start}-{session.end}"
    )


def _save(args: argparse.Namespace) -> None:
    if args.no_save:
        return
    if bpy.data.filepath:
        bpy.ops.wm.save_mainfile()
        _say(f"saved {bpy.data.filepath}")
    else:
        _say("the .blend has never been saved; not saving (give a .blend on the command line)")


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(list(argv))
        commands = {"shade": run_shade, "reattach": run_reattach, "export": run_export}
        return commands[args.command](args)
    except StoryShadeError as exc:
        print(f"storyshade: error: {exc}", file=sys.stderr, flush=True)
        return getattr(exc, "exit_code", 1)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
