"""Out-of-memory fallback: retry a window with smaller slices, then with offload.

A long job should not die at window 40 because one window hit the memory ceiling (another
process grabbed VRAM, a larger resolution than usual). Each rung of the ladder computes the
same numbers with a smaller peak; the engine stays on the rung that worked for the rest of
the job and reports every move in the job's events.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import replace
from typing import Generic, Protocol, TypeVar

import torch

from storyshade.engine.chunking import Plan
from storyshade.progress import Reporter

T = TypeVar("T")


class Rung(Protocol):
    """A step of a ladder: what the events call it."""

    @property
    def name(self) -> str: ...


P = TypeVar("P", bound=Rung)


def _smaller(current: int, cap: int) -> int:
    return min(current, cap) if current else cap


def ladder(base: Plan) -> list[Plan]:
    """`base` first, then ever smaller slices, then model offload as the last resort."""
    smaller = replace(
        base,
        name="smaller chunks",
        cfg_split=True,
        temporal_chunk=_smaller(base.temporal_chunk, 4096),
        ff_chunk=_smaller(base.ff_chunk, 1024),
        attention_slice=_smaller(base.attention_slice, 4),
    )
    smallest = replace(
        smaller,
        name="smallest chunks",
        temporal_chunk=_smaller(base.temporal_chunk, 512),
        ff_chunk=_smaller(base.ff_chunk, 256),
        attention_slice=1,
    )
    return [base, smaller, smallest, replace(smallest, name="offload", offload=True)]


def report_fallback(reporter: Reporter, old: Rung, new: Rung, where: str) -> None:
    """The `oom_fallback` note every engine's ladder sends (docs/engine.md)."""
    reporter.note(
        f"out of memory at {where} with '{old.name}'; retrying with '{new.name}'",
        event="oom_fallback",
        plan=new.name,
        where=where,
    )


def free_cached_memory() -> None:
    """Return what an aborted attempt left behind before trying again."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Fallback(Generic[P]):
    """Runs work under the current rung; on OOM moves down the ladder and tries again.
    Any engine's ladder: AnimateDiff's Plans (`ladder`), Wan's (engine/wan_oom.py)."""

    def __init__(self, plans: list[P], on_fallback: Callable[[P, P, str], None]):
        self.plans = plans
        self.level = 0
        self.on_fallback = on_fallback

    @property
    def plan(self) -> P:
        return self.plans[self.level]

    def run(self, work: Callable[[P], T], where: str) -> T:
        while True:
            failed = False
            try:
                return work(self.plan)
            except torch.OutOfMemoryError:
                if self.level + 1 >= len(self.plans):
                    raise
                failed = True  # retried outside `except` so the traceback's tensors are freed
            if failed:
                free_cached_memory()
                old = self.plan
                self.level += 1
                self.on_fallback(old, self.plan, where)
