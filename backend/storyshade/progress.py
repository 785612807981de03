"""Progress and cancellation, passed down from whoever runs a job (CLI, server, tests).

Stages report (stage, done, total, extra info); `check()` raises Cancelled between units
of work so a cancelled job stops at the next window, step or frame and keeps its output.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from storyshade.errors import Cancelled
from storyshade.wire.states import Event

Listener = Callable[[dict[str, Any]], None]


class Reporter:
    def __init__(self, listener: Listener | None = None, cancel: threading.Event | None = None):
        self.listener = listener
        self.cancel_event = cancel or threading.Event()

    def emit(self, event: dict[str, Any]) -> None:
        if self.listener:
            self.listener(event)

    def stage(self, stage: str, done: int, total: int, **info: Any) -> None:
        self.emit({"type": Event.PROGRESS, "stage": stage, "done": done, "total": total, **info})
        self.check()

    def note(self, message: str, **info: Any) -> None:
        self.emit({"type": Event.NOTE, "message": message, **info})

    def check(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled()
