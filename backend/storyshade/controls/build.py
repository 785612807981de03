"""Bundle → per-frame control images at generation size (uint8 RGB), plus what made them.

Two passes over the frames: the first finds the shot's one depth range, the second encodes.
Each pass file is decoded once per pass, one frame at a time, and every control frame is
written to disk as it is made (controls/store.py): the ControlSet's frames are sequences that
read a frame back when it is asked for, so memory stays at one frame whatever the shot length.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from storyshade.bundle import Bundle
from storyshade.cancel import CancelToken
from storyshade.controls import detectors, lines
from storyshade.controls.depth import (
    MAX_SAMPLES,
    DepthRange,
    check_finite,
    depth_images,
    inverse_depth,
    is_background,
    quantize,
    shot_range,
)
from storyshade.controls.normal import FACING, background_u8, encode, normalize, to_camera
from storyshade.controls.sizing import SizeMap
from storyshade.controls.store import ControlStore
from storyshade.progress import Reporter
from storyshade.settings import Settings
from storyshade.wire.states import Stage

PASSES = ("depth", "normal")
LINE_ROLES = ("lineart", "softedge", "canny")


@dataclass
class ControlSet:
    """Control frames per role ('depth', 'normal', derived line roles), each a sequence of
    HxWx3 uint8 arrays at generation size; `depth16` holds the same depth at 16 bits (HxW) for
    inspection; `regions` the region id map per frame (HxW uint8 at generation size, 0 = no
    look; empty without looks); `size_map` maps generated frames back to the scene's
    resolution. `build_controls` gives disk-backed sequences (controls/store.py) that read a
    frame on each `[i]`; plain lists work too."""

    frames: dict[str, Sequence[np.ndarray]]
    frame_numbers: list[int]
    meta: dict = field(default_factory=dict)
    depth16: Sequence[np.ndarray] = field(default_factory=list)
    size_map: SizeMap | None = None
    regions: Sequence[np.ndarray] = field(default_factory=list)

    def to_scene(self, rgb: np.ndarray) -> np.ndarray:
        """A generated frame at the render size (crop the padding, scale back); a frame
        larger than the generation size (a hires pass) is mapped by the same fit."""
        size_map = self.size_map
        if size_map and rgb.shape[1::-1] != size_map.generation:
            size_map = SizeMap.fit(size_map.render, (rgb.shape[1], rgb.shape[0]))
        return size_map.to_scene(rgb) if size_map else rgb


def line_roles(settings: Settings, extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Derived roles to compute → detector name, from the settings' controls and `extra`."""
    out: dict[str, str] = {}
    for role in LINE_ROLES:
        ctl = settings.controls.get(role)
        if ctl is not None or role in extra:
            out[role] = detectors.detector_for(role, ctl.detector if ctl else None)
    return out


def _sample(depth: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Up to k depth values, spread over the whole frame (strides can alias with rows)."""
    flat = depth.ravel()
    if flat.size <= k:
        return flat
    return flat[np.random.default_rng(seed).integers(0, flat.size, k)]


def _range(
    bundle: Bundle, settings: Settings, reporter: Reporter | None, cancel: CancelToken
) -> DepthRange:
    n = len(bundle)
    samples = []
    for i in range(n):
        cancel.check()
        depth, _normal = bundle.read_passes(i)
        check_finite(depth, f"frames[{i}].file")
        samples.append(_sample(depth, max(1, MAX_SAMPLES // n), i))
        del depth, _normal
        if reporter:
            reporter.stage(Stage.READING, i + 1, n)
    return shot_range(settings, bundle, samples)


def build_controls(
    bundle: Bundle,
    settings: Settings,
    reporter: Reporter | None = None,
    *,
    roots: list[Path] | None = None,
    extra_roles: tuple[str, ...] = (),
    workdir: Path | None = None,
    cancel: CancelToken | None = None,
) -> ControlSet:
    """Every control image a render with `settings` uses (depth and normal always, line roles
    named in `settings.controls` or `extra_roles`). `roots` are models roots, searched for
    learned line detectors' weights. The frames are written to a private folder under
    `workdir` (the system's temporary folder by default), removed when the ControlSet is.
    A cancelled `cancel` stops both passes at the next frame."""
    from storyshade.models.locate import model_roots

    roots = model_roots(roots)
    n = len(bundle)
    roles = line_roles(settings, extra_roles)
    device = "cpu"
    if any(det in detectors.LEARNED for det in roles.values()):
        from storyshade.models.loader import pick_device

        for det in roles.values():  # missing weights fail now, not after reading the shot
            if det in detectors.LEARNED:
                detectors.find_weights(det, roots)
        device = pick_device(settings.device)
    cancel = cancel or CancelToken()
    drange = _range(bundle, settings, reporter, cancel)
    size_map = SizeMap.fit((bundle.width, bundle.height), (settings.width, settings.height))
    convention = settings.normal_convention
    normal_bg = background_u8(convention)
    store = ControlStore(workdir)
    frames = {role: store.writer(role, n) for role in (*PASSES, *roles)}
    depth16 = store.writer("depth16", n)
    regions = store.writer("regions", n)
    looks = bool(bundle.shot.regions)
    for i in range(n):
        cancel.check()
        if looks:  # the id map is read with the passes
            depth, normal, ids = bundle.read_frame(i)
            regions.append(size_map.place(size_map.to_content(ids, nearest=True), 0))
        else:
            depth, normal = bundle.read_passes(i)
        check_finite(depth, f"frames[{i}].file")
        bg = is_background(depth)
        d01_native = inverse_depth(depth, drange.near, drange.far)
        cam_native = to_camera(normal, bundle.shot.frames[i].camera.rotation())
        cam_native[bg] = FACING
        edges = None
        if "geometry" in roles.values():  # found on the exact passes, before resampling
            mask = lines.geometry_edges(d01_native, cam_native, bg)
            edges = lines.resize_mask(mask, *size_map.box[2:])
        d01 = size_map.to_content(d01_native)
        cam = normalize(size_map.to_content(cam_native))
        bg_c = size_map.to_content(bg.astype(np.float32)) >= 1.0 - 1e-6  # purely background
        depth_u8, depth_u16 = depth_images(d01)
        normal_u8 = quantize(encode(cam, bg_c, convention), 8)
        frames["depth"].append(size_map.place(depth_u8, 0))
        frames["normal"].append(size_map.place(normal_u8, normal_bg))
        depth16.append(size_map.place(depth_u16, 0))
        for role, det in roles.items():
            line = detectors.derive(
                role,
                det,
                edges=edges,
                depth_u8=depth_u8,
                normal_u8=normal_u8,
                roots=roots,
                device=device,
            )
            frames[role].append(size_map.place(line, 0))
        if reporter:
            reporter.stage(Stage.CONTROLS, i + 1, n)
    meta = {
        **drange.to_dict(),
        "normal_convention": convention,
        **size_map.to_dict(),
        "derived": roles,
        "frames": list(bundle.shot.frame_numbers),
    }
    done = ControlSet(
        {role: writer.finish() for role, writer in frames.items()},
        bundle.shot.frame_numbers,
        meta,
        depth16.finish(),
        size_map,
        regions.finish(),
    )
    if reporter:
        reporter.note("control images ready", controls=meta)
        for name in unseen_looks(bundle, done.regions):
            reporter.note(f"look '{name}' is not visible in any frame; it changes nothing")
    return done


def unseen_looks(bundle: Bundle, regions: Iterable[np.ndarray]) -> list[str]:
    """Names of looks whose id appears in no frame (a warning, not an error: an object may
    simply be out of shot)."""
    seen: set[int] = set()
    for ids in regions:
        seen.update(np.unique(ids).tolist())
    return [r.name for r in bundle.shot.regions if r.id not in seen]
