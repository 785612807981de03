"""Where a shade session comes from: the sidebar's settings and the preferences (the Shade
button), or an earlier Blender's unfinished job (Reattach, and the headless CLI's
`reattach`). Kept apart from the operators so the CLI builds sessions without them."""

from __future__ import annotations

from ..errors import StoryShadeError
from ..export import bundle
from ..looks.resolve import take_looks
from ..remote.client import Client
from ..settings import prefs, props, request_settings
from ..takes import take
from ..takes.reshade import Reshade
from ..takes.run import unplaced_runs
from .shade import ShadeRequest, ShadeSession


def shade_request(
    scene,
    url: str,
    *,
    choices: request_settings.Choices | None = None,
    frames: tuple[int | None, int | None] | None = None,
    take_mode: str | None = None,
    output_pattern: str | None = None,
    context=None,
    sidebar=None,
    **fields,
) -> ShadeRequest:
    """The one request a Shade makes: the scene's sidebar (or `sidebar`'s, the edit's for
    a shot of a sequence), with anything given over it (the CLI's flags). The panel passes
    nothing, the CLI what its flags say, so the same scene and flags make the same request
    (tests/test_addon_request.py)."""
    opts = (sidebar or scene).storyshade
    choices = choices if choices is not None else props.choices(opts)
    if "frame_start" in fields:  # a shot of an edit (sequence.shot_request)
        frames = (fields.pop("frame_start"), fields.pop("frame_end"))
    start, end = frames if frames is not None else props.frame_range(opts)
    return ShadeRequest(
        settings=request_settings.build(choices),
        frame_start=start,
        frame_end=end,
        take_mode=take_mode or opts.take_mode,
        output_pattern=output_pattern
        or prefs.value("output_pattern", context, take.DEFAULT_PATTERN),
        server_url=url,
        inputs=props.inputs(opts, choices),
        **fields,
    )


def build_session(context) -> ShadeSession:
    """A run from the scene's sidebar settings and the add-on preferences."""
    url, token = prefs.server(context)
    request = shade_request(context.scene, url, context=context)
    return ShadeSession(context.scene, Client(url, token), request)


def reshade_request(
    scene,
    url: str,
    again: Reshade,
    take_mode: str | None = None,
    output_pattern: str | None = None,
    context=None,
    use_sidebar: bool = False,
) -> ShadeRequest:
    """Re-shade frames of a take: with the take's own settings, looks and references
    (again.settings: the take's with any overrides), or, `use_sidebar`, with what the
    sidebar says now (again.settings are then the sidebar's; looks and references the
    .blend's)."""
    request = ShadeRequest(
        settings=again.settings,
        take_mode=take_mode or take.KEEP,
        output_pattern=output_pattern
        or prefs.value("output_pattern", context, take.DEFAULT_PATTERN),
        server_url=url,
        inputs=props.inputs(scene.storyshade) if use_sidebar else {},
        reshade=again,
    )
    if not use_sidebar:
        request.looks = take_looks(again.regions, scene)
        request.style_references = []  # the take's references are in its settings, or none
    return request


def reattach_session(
    scene, url: str, token: str | None, pattern: str, take_mode: str, inputs: dict
) -> ShadeSession:
    """Follow the newest job of this shot that an earlier Blender session left running."""
    shot = bundle.shot_name(scene)
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
