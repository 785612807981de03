"""The order jobs run in: highest priority first, then first submitted.

Only ids and ordering live here; the store holds the jobs and the lock this is used under.
A cancelled job stays in the heap until it reaches the top and is skipped there (removing
it from the middle of a heap costs more than skipping it once).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable


class JobQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[int, int, str]] = []
        self.seq = 0  # the last submission number given out

    def __bool__(self) -> bool:
        return bool(self._heap)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def seen(self, seq: int) -> None:
        """A job restored from disk: later submissions number after it."""
        self.seq = max(self.seq, seq)

    def push(self, job_id: str, priority: int, seq: int) -> None:
        heapq.heappush(self._heap, (-priority, seq, job_id))

    def pop(self) -> str:
        return heapq.heappop(self._heap)[2]

    def positions(self, waiting: Callable[[str], bool]) -> dict[str, int]:
        """Place in line (1 = next to run) of every job still `waiting`."""
        order = sorted(e for e in self._heap if waiting(e[2]))
        return {job_id: i + 1 for i, (_, _, job_id) in enumerate(order)}
