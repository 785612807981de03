"""Read a .safetensors header (tensor names and shapes) without loading any weights.

Classification and compatibility checks run on every job and on `models list`; reading a
few kilobytes of JSON keeps them instant even for multi-gigabyte checkpoints.
"""

from __future__ import annotations

import json
import struct
from functools import lru_cache
from pathlib import Path

from storyshade.errors import ModelError

Shapes = dict[str, tuple[int, ...]]
_MAX_HEADER = 100 * 1024 * 1024


def shapes(path: str | Path) -> Shapes:
    """Tensor name → shape for a safetensors file (cached per file version)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise ModelError(f"cannot read {path} ({exc.strerror})", field="models") from None
    return _shapes(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=256)
def _shapes(path: str, _mtime: int, _size: int) -> Shapes:
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > _MAX_HEADER:
                raise ValueError("header too large")
            header = json.loads(f.read(length))
        return {
            name: tuple(int(n) for n in entry["shape"])
            for name, entry in header.items()
            if name != "__metadata__"
        }
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise ModelError(
            f"{path} is not a readable .safetensors file ({exc})",
            "re-download or re-convert the file",
            field="models",
        ) from None
