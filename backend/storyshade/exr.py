"""Read Blender's multilayer EXR passes with the OpenEXR library.

Channel names carry the view layer name (`ViewLayer.Depth.Z`), which varies, so passes
are found by suffix. Blender 5.0 may write multi-part files; all parts are searched.
The Object Index pass (region ids of per-object looks) is `Object Index.X` from 5.0 and
`IndexOB.X` before.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from storyshade.errors import BundleError

_NORMAL = ("Normal.X", "Normal.Y", "Normal.Z")
_INDEX = ("Object Index.X", "IndexOB.X", "IndexOB")


def _channels(path: Path, field: str) -> dict[str, np.ndarray]:
    import OpenEXR

    try:
        with OpenEXR.File(str(path), separate_channels=True) as exr:
            found: dict[str, np.ndarray] = {}
            for part in exr.parts:  # Blender 5.0 writes one part per pass
                for name, channel in part.channels.items():
                    found[name] = channel.pixels
            return found
    except Exception as exc:  # OpenEXR raises bare RuntimeError/ValueError on bad files
        raise BundleError(
            f"{path.name} is not a readable EXR ({exc})", "re-export the shot", field=field
        ) from None


def _find(channels: dict[str, np.ndarray], suffix: str) -> np.ndarray | None:
    for name, pixels in channels.items():
        if name == suffix or name.endswith("." + suffix):
            return pixels
    return None


def read_depth_normal(path: Path, field: str = "pass") -> tuple[np.ndarray, np.ndarray]:
    """Depth (HxW) and world-space normal (HxWx3) as float32; NaN/inf depth is rejected."""
    depth, normal, _ids = read_passes(path, field)
    return depth, normal


def _region_ids(channels: dict[str, np.ndarray], path: Path, field: str) -> np.ndarray:
    index = next((p for p in (_find(channels, c) for c in _INDEX) if p is not None), None)
    if index is None:
        raise BundleError(
            f"{path.name} lacks the Object Index pass that the shot's looks need",
            "re-export the shot with StoryShade, which writes it when objects have looks",
            field=field,
        )
    index = np.asarray(index, dtype=np.float32)
    ids = np.rint(index)
    if not np.isfinite(index).all() or (ids < 0).any() or (ids > 255).any():
        raise BundleError(
            f"{path.name}'s Object Index pass holds values outside 0-255",
            "re-export the shot",
            field=field,
        )
    return ids.astype(np.uint8)


def read_passes(
    path: Path, field: str = "pass", with_ids: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Depth and normal as `read_depth_normal`, and with `with_ids` the region id map
    (HxW uint8) from the Object Index pass."""
    channels = _channels(path, field)
    depth = _find(channels, "Depth.Z")
    normal = [_find(channels, c) for c in _NORMAL]
    if depth is None or any(n is None for n in normal):
        raise BundleError(
            f"{path.name} lacks the Depth.Z and Normal.X/Y/Z passes "
            f"(channels: {', '.join(sorted(channels))})",
            "export with StoryShade, which enables the Z and Normal passes",
            field=field,
        )
    depth = np.asarray(depth, dtype=np.float32)
    normal_arr = np.stack([np.asarray(n, dtype=np.float32) for n in normal], axis=-1)
    if not np.isfinite(depth).all():
        bad = int((~np.isfinite(depth)).sum())
        raise BundleError(
            f"{path.name} has {bad} NaN or infinite depth pixels",
            "check the scene for degenerate geometry or a zero-scale camera, then re-export",
            field=field,
        )
    if not np.isfinite(normal_arr).all():
        raise BundleError(f"{path.name} has NaN normals", "re-export the shot", field=field)
    ids = _region_ids(channels, path, field) if with_ids else None
    return depth, normal_arr, ids


def write_depth_normal(
    path: Path, depth: np.ndarray, normal: np.ndarray, ids: np.ndarray | None = None
) -> None:
    """Write a pass file in Blender's channel layout (for tests and synthetic bundles);
    `ids` adds the Object Index pass as Blender 5 names it."""
    import OpenEXR

    channels = {
        "ViewLayer.Depth.Z": np.ascontiguousarray(depth, dtype=np.float32),
        "ViewLayer.Normal.X": np.ascontiguousarray(normal[..., 0], dtype=np.float32),
        "ViewLayer.Normal.Y": np.ascontiguousarray(normal[..., 1], dtype=np.float32),
        "ViewLayer.Normal.Z": np.ascontiguousarray(normal[..., 2], dtype=np.float32),
    }
    if ids is not None:
        channels["ViewLayer.Object Index.X"] = np.ascontiguousarray(ids, dtype=np.float32)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, channels) as exr:
        exr.write(str(path))
