"""The data folder belongs to one server process at a time.

Two servers on one folder would both run its queued jobs. A lock file held with flock for
the life of the process prevents that; the kernel drops it when the process dies, even by
SIGKILL, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import IO

from storyshade.errors import StoryShadeError


def lock_data_dir(data_dir: Path) -> IO[str] | None:
    """Hold `data_dir/server.lock` until the process exits; None where flock does not exist."""
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no flock; one server per folder is then the user's call
        return None
    handle = (data_dir / "server.lock").open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise StoryShadeError(
            f"the data folder {data_dir} is in use by another StoryShade server (pid {owner})",
            "stop that server, or give this one its own --data folder",
            field="data",
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def upload_tmp(data_dir: Path) -> Path:
    """An empty folder for upload spool files, on the same disk as the jobs they become."""
    tmp = data_dir / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)  # spool files of requests cut off by a crash
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp
