"""Progress, passed down from whoever runs a job (CLI, server, tests).

Stages report (stage, done, total, extra info); notes say what happened. Reporting never
stops anything: cancellation is its own token (storyshade.cancel), checked where the work
is cut into units.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from storyshade.wire.states import Event

Listener = Callable[[dict[str, Any]], None]


class Reporter:
    """Sends a job's events to `listener` (none: they are dropped)."""

    def __init__(self, listener: Listener | None = None):
        self.listener = listener

    def emit(self, event: dict[str, Any]) -> None:
        if self.listener:
            self.listener(event)

    def stage(self, stage: str, done: int, total: int, **info: Any) -> None:
        self.emit({"type": Event.PROGRESS, "stage": stage, "done": done, "total": total, **info})

    def note(self, message: str, **info: Any) -> None:
        self.emit({"type": Event.NOTE, "message": message, **info})
