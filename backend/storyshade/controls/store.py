"""Control frames on disk, read back one frame at a time.

A long shot's control images would otherwise all sit in memory for the whole render (256
frames of two 512x512 controls are 400 MiB, more with line roles and the 16-bit depth).
Instead each frame is appended to a `.npy` file (F, *shape) as it is made, and the engine
gets a `DiskFrames`: a read-only Sequence whose `[i]` reads frame i from the file into a
fresh array. Nothing stays mapped (no np.memmap: pages of a mapping that was read stay in
the resident set), so memory holds only the frames a window is using.

The files live in a `ControlStore` folder that is removed once nothing refers to it (no
`DiskFrames` of it is alive), or at interpreter exit.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import overload

import numpy as np


class ControlStore:
    """A private folder for one ControlSet's frame files; removed when garbage-collected."""

    def __init__(self, parent: Path | None = None) -> None:
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix="controls-", dir=parent))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.path, True)

    def writer(self, name: str, count: int) -> FrameWriter:
        return FrameWriter(self, self.path / f"{name}.npy", count)


class FrameWriter:
    """Appends `count` frames of one shape and dtype (set by the first) to a .npy file."""

    def __init__(self, store: ControlStore, path: Path, count: int) -> None:
        self.store = store
        self.path = path
        self.count = count
        self.written = 0
        self._fh = None
        self._shape: tuple[int, ...] = ()
        self._dtype: np.dtype | None = None
        self._offset = 0

    def append(self, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame)
        if self._fh is None:
            self._shape, self._dtype = frame.shape, frame.dtype
            self._fh = self.path.open("wb")
            header = {
                "descr": np.lib.format.dtype_to_descr(frame.dtype),
                "fortran_order": False,
                "shape": (self.count, *frame.shape),
            }
            np.lib.format.write_array_header_2_0(self._fh, header)
            self._offset = self._fh.tell()
        elif frame.shape != self._shape or frame.dtype != self._dtype:
            raise ValueError(
                f"frame {self.written} is {frame.shape} {frame.dtype}, not {self._shape}"
            )
        if self.written >= self.count:
            raise ValueError(f"more than {self.count} frames")
        self._fh.write(frame.data)
        self.written += 1

    def finish(self) -> DiskFrames | list[np.ndarray]:
        """The frames as a read-on-demand sequence (an empty list for no frames)."""
        if self._fh is None:
            return []
        self._fh.close()
        if self.written != self.count:
            raise ValueError(f"{self.written} of {self.count} frames written")
        return DiskFrames(self.store, self.path, self.count, self._shape, self._dtype, self._offset)


class DiskFrames(Sequence[np.ndarray]):
    """Frames in a .npy file; `[i]` reads frame i from disk (a new, writable array)."""

    def __init__(
        self,
        store: ControlStore,
        path: Path,
        count: int,
        shape: tuple[int, ...],
        dtype: np.dtype,
        offset: int,
    ) -> None:
        self.store = store  # keeps the folder alive as long as these frames are
        self.path = path
        self.count = count
        self.shape = shape
        self.dtype = dtype
        self.offset = offset
        self.frame_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        """Bytes of frame data on disk."""
        return self.count * self.frame_bytes

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...
    @overload
    def __getitem__(self, index: slice) -> list[np.ndarray]: ...
    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        i = int(index)
        if i < 0:
            i += self.count
        if not 0 <= i < self.count:
            raise IndexError(f"frame {index} of {self.count}")
        out = np.empty(self.shape, self.dtype)
        with self.path.open("rb") as fh:
            fh.seek(self.offset + i * self.frame_bytes)
            if fh.readinto(memoryview(out).cast("B")) != self.frame_bytes:
                raise OSError(f"{self.path} is truncated at frame {i}")
        return out

    def __repr__(self) -> str:
        return f"DiskFrames({self.count} x {self.shape} {self.dtype}, {self.path})"
