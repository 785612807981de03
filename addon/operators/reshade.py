"""Re-shade frames of the active take, and the sequence's contact sheet and review page.

Re-shade Frames shades frames From-To of the take strip selected in the Sequencer again
with the take's own settings (seed, presets, prompts, looks, references), or with the
sidebar's when the Take sub-panel says so, on the same modal machinery as Shade; the new
take copies the take's other frames (takes/reshade.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import bpy

from ..errors import StoryShadeError
from ..remote import server_local
from ..remote.client import Client
from ..session.build import reshade_request
from ..session.shade import ShadeSession
from ..settings import prefs, props
from ..takes import reshade, take
from . import modal
from .take import active_take

SHEET_NAME = "sequence_sheet.png"
SHEET_TIMEOUT = 300.0  # seconds: a sheet reads one frame per take, so minutes is plenty


def build_reshade_session(context) -> ShadeSession:
    """Re-shade From-To of the selected take: with the take's own settings unless the
    Take sub-panel's "Use the Sidebar's Settings" is ticked."""
    strip = active_take(context)
    if strip is None:
        raise StoryShadeError(
            "no take strip is selected", "select a StoryShade take strip in the Sequencer"
        )
    scene = context.scene
    opts = scene.storyshade
    url, token = prefs.server(context)
    sidebar = props.overrides(opts) if opts.reshade_use_sidebar else None
    again = reshade.plan(scene, strip.name, opts.reshade_start, opts.reshade_end, settings=sidebar)
    request = reshade_request(
        scene, url, again, context=context, use_sidebar=opts.reshade_use_sidebar
    )
    return ShadeSession(scene, Client(url, token), request)


class STORYSHADE_OT_reshade_take(modal.ShadeRun, bpy.types.Operator):
    """Shade frames From-To of the selected take again, with the take's own settings (or
    the sidebar's, if ticked); the new take keeps the take's other frames exactly"""

    bl_idname = "storyshade.reshade_take"
    bl_label = "Re-shade Frames"

    @classmethod
    def poll(cls, context):
        if not super().poll(context):
            return False
        if active_take(context) is None:
            cls.poll_message_set("Select a StoryShade take strip in the Sequencer")
            return False
        return True

    def _build(self, context) -> ShadeSession:
        return build_reshade_session(context)


def sheet_command(context, takes_root: Path, out: Path) -> list[str]:
    """`storyshade sheet` through the same Python that Start Local Server uses."""
    command = server_local.detect_command(prefs.value("server_python", context))
    if command is None:
        raise StoryShadeError(
            "the contact sheet needs StoryShade's server installed on this machine",
            "set its Python in the add-on preferences, or run `storyshade sheet "
            f"{takes_root} --out sheet.png` where it is installed",
        )
    return [*command[:-1], "sheet", str(takes_root), "--out", str(out)]


class STORYSHADE_OT_contact_sheet(bpy.types.Operator):
    """Write one contact sheet of every shot's takes (a row per shot, a column per take)
    beside the takes, and open it in Blender's images"""

    bl_idname = "storyshade.contact_sheet"
    bl_label = "Contact Sheet"
    bl_options = {"REGISTER"}

    def execute(self, context):
        pattern = prefs.value("output_pattern", context, take.DEFAULT_PATTERN)
        root = take.takes_root("shot", pattern, context.scene.name)[0].parent
        out = root / SHEET_NAME
        try:
            if not root.is_dir():
                raise StoryShadeError(f"no takes yet in {root}", "shade a shot or a sequence first")
            cmd = sheet_command(context, root, out)
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=SHEET_TIMEOUT)
            if done.returncode != 0:
                why = (done.stderr.strip().splitlines() or ["no output"])[-1]
                raise StoryShadeError(f"storyshade sheet failed: {why[:300]}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            return self._fail(context, StoryShadeError(f"storyshade sheet did not run ({exc})"))
        except StoryShadeError as exc:
            return self._fail(context, exc)
        image = bpy.data.images.load(str(out), check_existing=True)
        image.reload()
        self.report({"INFO"}, f"Contact sheet written to {out} (image '{image.name}')")
        return {"FINISHED"}

    def _fail(self, context, exc: StoryShadeError) -> set[str]:
        modal.show_error(context, exc)
        self.report({"ERROR"}, str(exc))
        return {"CANCELLED"}


class STORYSHADE_OT_open_review(bpy.types.Operator):
    """Open the server's review page, which plays the takes of every shot side by side"""

    bl_idname = "storyshade.open_review"
    bl_label = "Review Page"
    bl_options = {"REGISTER"}

    def execute(self, context):
        url = prefs.server(context)[0].rstrip("/") + "/v1/review"
        bpy.ops.wm.url_open(url=url)
        self.report({"INFO"}, f"Opened {url}")
        return {"FINISHED"}
