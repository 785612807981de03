"""Where a shade session comes from: the sidebar's settings and the preferences (the Shade
button), or an earlier Blender's unfinished job (Reattach, and the headless CLI's
`reattach`). Kept apart from the operators so the CLI builds sessions without them."""

from __future__ import annotations

from . import export, prefs, props, take
from .client import Client
from .errors import StoryShadeError
from .session import ShadeRequest, ShadeSession
from .shade import unplaced_runs


def build_session(context) -> ShadeSession:
    """A run from the scene's sidebar settings and the add-on preferences."""
    scene = context.scene
    opts = scene.storyshade
    url, token = prefs.server(context)
    start, end = props.frame_range(opts)
    request = ShadeRequest(
        settings=props.overrides(opts),
        frame_start=start,
        frame_end=end,
        take_mode=opts.take_mode,
        output_pattern=prefs.value("output_pattern", context, take.DEFAULT_PATTERN),
        server_url=url,
        inputs=props.inputs(opts),
    )
    return ShadeSession(scene, Client(url, token), request)


def reattach_session(
    scene, url: str, token: str | None, pattern: str, take_mode: str, inputs: dict
) -> ShadeSession:
    """Follow the newest job of this shot that an earlier Blender session left running."""
    shot = export.shot_name(scene)
    root, _ = take.takes_root(shot, pattern, scene.name)
    runs = unplaced_runs(root)
    if not runs:
        raise StoryShadeError(
            f"no unfinished StoryShade job for shot '{shot}' (looked in {root})",
            "shade the shot with the Shade button",
        )
    request = ShadeRequest(
        settings=runs[-1].settings,
        take_mode=take_mode,
        output_pattern=pattern,
        server_url=url,
        inputs=inputs,
    )
    return ShadeSession.reattach(scene, Client(url, token), request, runs[-1])


def build_reattach_session(context) -> ShadeSession:
    opts = context.scene.storyshade
    url, token = prefs.server(context)
    pattern = prefs.value("output_pattern", context, take.DEFAULT_PATTERN)
    return reattach_session(context.scene, url, token, pattern, opts.take_mode, props.inputs(opts))
