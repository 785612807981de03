"""The shots of an edit, found the two ways storyboard artists lay them out.

- **Camera markers** in one scene: each timeline marker bound to a camera starts a shot
  that runs to the frame before the next such marker (the last one to the scene's end).
  Blender switches the scene camera at those markers, so a shot exports with its camera.
  Markers without a camera are notes, not shots: they are listed, not used.
- **Scene strips** in the Sequencer: each strip is a shot of its scene, seen through the
  strip's camera override or that scene's camera, over the scene frames the strip shows.

Each shot's take lands in the shot's own scene at the shot's frames (a marker shot in the
edit's scene, a scene-strip shot in the strip's scene), so the edit itself is never moved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .. import compat
from ..errors import StoryShadeError


@dataclass(frozen=True)
class Shot:
    name: str  # marker or strip name, as shown in the shot list
    scene_name: str  # the scene that is exported (and receives the take)
    camera: str  # camera object name
    frame_start: int
    frame_end: int
    source: str  # "marker" or "strip"

    @property
    def frames(self) -> int:
        return self.frame_end - self.frame_start + 1

    @property
    def slug(self) -> str:
        """The shot's name as used for take folders and strips."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.name).strip("._") or "shot"


@dataclass
class EditShots:
    shots: list[Shot]
    notes: list[str]  # markers without a camera, and other things that are not shots


def marker_shots(scene) -> EditShots:
    """Shots from the camera-bound markers of `scene` (none if it has no such marker)."""
    markers = sorted(scene.timeline_markers, key=lambda m: (m.frame, m.name))
    bound = [m for m in markers if m.camera is not None]
    notes = [
        f"marker '{m.name}' (frame {m.frame}) has no camera" for m in markers if m.camera is None
    ]
    shots: list[Shot] = []
    for i, marker in enumerate(bound):
        following = bound[i + 1] if i + 1 < len(bound) else None
        if following is not None and following.frame == marker.frame:
            raise StoryShadeError(
                f"markers '{marker.name}' and '{following.name}' are both on frame {marker.frame}",
                "move one of them: each camera marker starts its own shot",
            )
        end = following.frame - 1 if following else scene.frame_end
        if marker.camera.type != "CAMERA":
            raise StoryShadeError(
                f"marker '{marker.name}' is bound to '{marker.camera.name}', which is not a camera",
                "bind the marker to a camera (Marker > Bind Camera to Markers)",
            )
        if end < marker.frame:
            raise StoryShadeError(
                f"shot '{marker.name}' has no frames: its marker (frame {marker.frame}) is after "
                f"the scene's end ({scene.frame_end})",
                "move the marker inside the scene's frame range, or extend the range",
            )
        shots.append(Shot(marker.name, scene.name, marker.camera.name, marker.frame, end, "marker"))
    return EditShots(shots, notes)


def strip_shots(scene) -> EditShots:
    """Shots from the scene strips in `scene`'s Sequencer."""
    editor = scene.sequence_editor
    if editor is None:
        return EditShots([], [])
    strips = sorted(
        (s for s in compat.strips(editor) if s.type == "SCENE" and not s.mute),
        key=lambda s: (s.frame_final_start, s.channel),
    )
    shots: list[Shot] = []
    for i, strip in enumerate(strips):
        shown = strip.scene
        if shown is None:
            raise StoryShadeError(f"scene strip '{strip.name}' shows no scene", "pick its scene")
        camera = strip.scene_camera or shown.camera
        if camera is None:
            raise StoryShadeError(
                f"scene strip '{strip.name}' shows scene '{shown.name}', which has no camera",
                "give that scene an active camera, or set the strip's camera override",
            )
        for other in strips[i + 1 :]:
            if other.frame_final_start < strip.frame_final_end:
                raise StoryShadeError(
                    f"scene strips '{strip.name}' and '{other.name}' overlap in the edit "
                    f"(frames {other.frame_final_start}-{strip.frame_final_end - 1})",
                    "trim them so each frame of the edit belongs to one shot",
                )
        start = shown.frame_start + int(strip.frame_offset_start)
        end = start + strip.frame_final_duration - 1
        if end < start:
            raise StoryShadeError(f"scene strip '{strip.name}' has no frames", "lengthen it")
        shots.append(Shot(strip.name, shown.name, camera.name, start, end, "strip"))
    return EditShots(shots, [])


def find_shots(scene) -> EditShots:
    """The edit's shots: scene strips if the Sequencer has any, else camera markers."""
    found = strip_shots(scene)
    if found.shots:
        return found
    return marker_shots(scene)


def pick(found: EditShots, names: list[str] | None) -> list[Shot]:
    """All shots, or those named (each name must be a shot)."""
    if not found.shots:
        raise StoryShadeError(
            "this file has no shots: no camera-bound markers and no scene strips",
            "bind cameras to markers (Marker > Bind Camera to Markers) or add scene strips "
            "to the Sequencer; or shade the scene's range without --all-shots",
        )
    if not names:
        return list(found.shots)
    by_name = {shot.name: shot for shot in found.shots}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise StoryShadeError(
            f"no shot named {', '.join(repr(n) for n in unknown)}",
            f"the shots are: {', '.join(by_name)}",
        )
    return [by_name[n] for n in names]
