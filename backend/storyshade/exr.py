"""Read Blender's multilayer EXR passes with the OpenEXR library.

Channel names carry the view layer name (`ViewLayer.Depth.Z`), which varies, so passes
are found by suffix. Blender 5.0 may write multi-part files; all parts are searched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from storyshade.errors import BundleError

_NORMAL = ("Normal.X", "Normal.Y", "Normal.Z")


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
    return depth, normal_arr


def write_depth_normal(path: Path, depth: np.ndarray, normal: np.ndarray) -> None:
    """Write a pass file in Blender's channel layout (for tests and synthetic bundles)."""
    import OpenEXR

    channels = {
        "ViewLayer.Depth.Z": np.ascontiguousarray(depth, dtype=np.float32),
        "ViewLayer.Normal.X": np.ascontiguousarray(normal[..., 0], dtype=np.float32),
        "ViewLayer.Normal.Y": np.ascontiguousarray(normal[..., 1], dtype=np.float32),
        "ViewLayer.Normal.Z": np.ascontiguousarray(normal[..., 2], dtype=np.float32),
    }
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, channels) as exr:
        exr.write(str(path))
