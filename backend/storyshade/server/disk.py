"""The data folder's disk: how much is free, the floor below which submits are refused, and
what a job or a request says when a write fails.

A full disk is the server's problem, never the client's: a request gets 507 and a job
fails with the free space named; the queue goes on, and submits work again once space is
freed (no restart).
"""

from __future__ import annotations

import errno
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storyshade.errors import StoryShadeError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class OutOfDisk(StoryShadeError):
    status = 507


class DiskFailed(StoryShadeError):
    """A write failed for another reason than space (EIO, a read-only disk): the server's."""

    status = 503


def mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def os_error(exc: BaseException) -> OSError | None:
    """The OSError behind `exc` (itself, or what it was raised from), if any."""
    seen = 0
    while exc is not None and seen < 16:
        if isinstance(exc, OSError) and exc.errno is not None:
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


@dataclass
class Disk:
    """The data folder and its free-space floor (0: no floor)."""

    folder: Path
    min_free: int = 1 << 30

    def free(self) -> int:
        try:
            return shutil.disk_usage(self.folder).free
        except OSError:
            return 0

    def low(self) -> bool:
        return self.min_free > 0 and self.free() < self.min_free

    def below_floor(self) -> OutOfDisk:
        return OutOfDisk(
            f"the server's disk is nearly full: its data folder {self.folder} has "
            f"{mib(self.free())} free, under the floor of {mib(self.min_free)} this server "
            "keeps for the jobs it runs",
            "try again later; the server's administrator frees space in the data folder "
            "(or lowers --min-free-mb)",
        )

    def error_for(self, exc: OSError) -> StoryShadeError:
        """The error a failed write becomes: 507 with the free space for a full disk."""
        if exc.errno in NO_SPACE:
            return OutOfDisk(
                f"the server's disk is full: its data folder {self.folder} has "
                f"{mib(self.free())} free ({exc.strerror})",
                "free space in the server's data folder (or lower --cache-mb), then submit "
                "again; frames written so far are kept",
            )
        where = f" ({exc.filename})" if exc.filename else ""
        return DiskFailed(
            f"the server could not read or write its files: {exc.strerror or exc}{where}",
            "check the server's disk and its log; frames written so far are kept",
        )

    def job_error(self, exc: OSError) -> dict[str, Any]:
        return self.error_for(exc).to_json()
