"""The process's heap behaviour, set once at start-up by every entry point.

glibc's malloc serves blocks above its mmap threshold (128 KiB at start) with mmap, and
freeing one unmaps it, so its pages leave the process at once. But each time a large
mmapped block is freed, glibc raises that threshold to the block's size (up to 32 MiB on
64-bit), after which tensors of that size come from the heap, and freed heap pages stay
resident until the top of the heap happens to be free. Peak RSS then records the
allocator's history rather than the working set: a render's peak grew with the shot
(`storyshade render`, 16 to 64 frames: 1760 to 1833 MiB) although its working set does
not. Fixing both thresholds (the same as the environment variables
`MALLOC_MMAP_THRESHOLD_=131072 MALLOC_TRIM_THRESHOLD_=131072`, which users do not set)
keeps every large tensor mmapped and returns freed heap tops promptly.

Call `configure()` before large allocations: the CLI (`storyshade ...`, the server
included) does at the start of `main`, a Ray worker when its actor starts. Elsewhere
(macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import platform

# mallopt parameters from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD = 128 * 1024  # bytes: glibc's own starting value, kept instead of let grow

_done: dict[str, bool] = {}


def configure() -> bool:
    """Fix glibc's mmap and trim thresholds for this process; True where it did (glibc),
    False elsewhere. Idempotent."""
    if "result" not in _done:
        _done["result"] = _mallopt()
    return _done["result"]


def _mallopt() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)  # the symbols already in the process: its C library
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, THRESHOLD))
