"""Cancellation, as its own token handed to the work that must stop.

Whoever cancels (the HTTP cancel route, the Ray relay, a test) holds the token and calls
`cancel()`; the work (control building, model loading, the engine, saving) calls `check()`
at the start of each unit of work (a frame, a window, a model call, a decode chunk) and
stops there with `Cancelled`, keeping what it produced. Progress reporting
(storyshade.progress) is separate: reporting a stage is never a hidden cancellation point,
so each place that stops is one you can see.
"""

from __future__ import annotations

import threading

from storyshade.errors import Cancelled


class CancelToken:
    """A one-way switch, safe to set from any thread: once cancelled, it stays cancelled."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the work holding this token to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise `Cancelled` if `cancel()` was called."""
        if self._event.is_set():
            raise Cancelled()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or `timeout` seconds pass; True if cancelled."""
        return self._event.wait(timeout)

    def __repr__(self) -> str:
        return f"CancelToken(cancelled={self.cancelled})"
