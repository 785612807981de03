"""A job's event history: appended to `events.jsonl`, replayed to clients that (re)connect.

Event ids are 1-based positions in the file, so `Last-Event-ID: N` means "send N+1 on".
SSE streams wait on an asyncio.Event that the worker thread sets through the stream's own
loop, so a waiting client holds no thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any


class EventLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[dict[str, Any]] = self._load()
        self.waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.lock = threading.Lock()

    def _load(self) -> list[dict[str, Any]]:
        """Read the history; a torn last line (a crash mid-write) is cut off for good."""
        if not self.path.exists():
            return []
        items: list[dict[str, Any]] = []
        raw = self.path.read_bytes()
        good = 0
        for line in raw.splitlines(keepends=True):
            try:
                event = json.loads(line)
            except ValueError:
                break
            if not line.endswith(b"\n") or not isinstance(event, dict):
                break
            items.append(event)
            good += len(line)
        if good != len(raw):
            with self.path.open("r+b") as fh:
                fh.truncate(good)
        return items

    def __len__(self) -> int:
        return len(self.items)

    def append(self, job_id: str, event: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            own = {"id": len(self.items) + 1, "job": job_id, "time": round(time.time(), 3)}
            event = {**own, **{k: v for k, v in event.items() if k not in own}}
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(event) + "\n")
            self.items.append(event)
            waiters = list(self.waiters)
        for loop, waiter in waiters:
            try:
                loop.call_soon_threadsafe(waiter.set)
            except RuntimeError:  # that client's loop is gone
                with self.lock:
                    self.waiters.discard((loop, waiter))
        return event

    def after(self, last_id: int) -> list[dict[str, Any]]:
        return self.items[max(0, last_id) :]

    def subscribe(self) -> asyncio.Event:
        waiter = asyncio.Event()
        with self.lock:
            self.waiters.add((asyncio.get_running_loop(), waiter))
        return waiter

    def unsubscribe(self, waiter: asyncio.Event) -> None:
        with self.lock:
            self.waiters = {w for w in self.waiters if w[1] is not waiter}
