"""Every StoryShade entry point fixes glibc's mmap threshold before large allocations, so a
freed large tensor leaves the process at once and peak memory is the working set's, as a
user runs it (docs/engine.md). Checked by what glibc does, in fresh processes: after an
8 MiB block is freed, is a 4 MiB block mapped on its own (fixed threshold) or taken from
the heap (glibc's default, which raised its threshold to 8 MiB)?"""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest
from conftest import REPO

PROBE = """
import ctypes, json, sys
libc = ctypes.CDLL(None)
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

def mapped_on_its_own():
    libc.free(libc.malloc(8 << 20))  # glibc's default raises its threshold to 8 MiB here
    before = libc.mallinfo2().hblks
    block = libc.malloc(4 << 20)
    mapped = libc.mallinfo2().hblks - before
    libc.free(block)
    return mapped == 1

{start}
print(json.dumps(mapped_on_its_own()))
"""

STARTS = {
    "nothing": "",
    "allocator": "from storyshade import allocator; assert allocator.configure()",
    "cli": "from storyshade.cli import main; main(['presets', 'list'])",
    "ray worker": "from storyshade.cluster.worker import ShadeWorker; ShadeWorker(1, 1 << 20)",
}


def probe(start: str) -> bool:
    env = {"PYTHONPATH": str(REPO / "backend"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(start=start)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
@pytest.mark.parametrize("start", list(STARTS))
def test_every_entry_point_fixes_the_mmap_threshold(start):
    assert probe(STARTS[start]) is (start != "nothing")
