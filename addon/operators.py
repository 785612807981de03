"""The `storyshade.shade` operator: shade the scene's shot into a new take strip."""

from __future__ import annotations

import bpy

from . import export, prefs, take
from .client import Client
from .errors import StoryShadeError
from .shade import TakeRun, follow_job, remove_bundle, submit_bundle, temp_bundle_dir


def shade_scene(scene, url: str, token: str | None, settings: dict, report) -> object:
    """Synchronous shading (blocks); returns the new strip."""
    export.check_scene(scene)
    start, end = export.frame_range(scene, None, None)
    client = Client(url, token)
    client.health()
    shot = export.shot_name(scene)
    bundle_dir = temp_bundle_dir()
    try:
        for _ in export.iter_export(scene, bundle_dir, start, end):
            pass
        folder, take_name, temporary = take.next_take_dir(shot)
        run = TakeRun(shot, take_name, folder, temporary, list(range(start, end + 1)))
        run.settings = settings
        submit_bundle(client, bundle_dir, run)
    finally:
        remove_bundle(bundle_dir)
    follow_job(client, run, report)
    if temporary:
        report(f"unsaved .blend: frames are in {folder}")
    return take.add_take_strip(
        scene, folder, run.frames, shot, take_name, {"job": run.job_id, "settings": settings}
    )


class STORYSHADE_OT_shade(bpy.types.Operator):
    """Export depth/normal passes, shade them on the StoryShade server, add a take strip"""

    bl_idname = "storyshade.shade"
    bl_label = "Shade Shot"
    bl_options = {"REGISTER"}

    def execute(self, context):
        scene = context.scene
        opts = scene.storyshade
        url, token = prefs.server(context)

        def report(text: str) -> None:
            opts.status = text

        try:
            strip = shade_scene(scene, url, token, opts.overrides(), report)
        except StoryShadeError as exc:
            opts.status = str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        opts.status = f"Take {strip.name} added on channel {strip.channel}"
        self.report({"INFO"}, opts.status)
        return {"FINISHED"}
