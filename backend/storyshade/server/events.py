"""A job's event history: appended to `events.jsonl`, replayed to clients that (re)connect.

Event ids are 1-based positions in the file, so `Last-Event-ID: N` means "send N+1 on".
SSE streams wait on an asyncio.Event that the worker thread sets through the stream's own
loop, so a waiting client holds no thread.

An event that cannot be written (a full disk) is still kept in memory and streamed, and
waits to be written, in order, by the next append or `flush()`: the file never skips an
id, and never keeps half a line.
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
        self.pending: list[str] = []  # lines kept in memory that the file does not have yet

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
        """Add an event (streamed at once) and write it; raises the OSError when the file
        could not take it, the event then waiting in memory for the next write."""
        failed: OSError | None = None
        with self.lock:
            own = {"id": len(self.items) + 1, "job": job_id, "time": round(time.time(), 3)}
            event = {**own, **{k: v for k, v in event.items() if k not in own}}
            self.items.append(event)
            self.pending.append(json.dumps(event) + "\n")
            try:
                self._write_pending()
            except OSError as exc:
                failed = exc
            waiters = list(self.waiters)
        for loop, waiter in waiters:
            try:
                loop.call_soon_threadsafe(waiter.set)
            except RuntimeError:  # that client's loop is gone
                with self.lock:
                    self.waiters.discard((loop, waiter))
        if failed is not None:
            raise failed
        return event

    def flush(self) -> bool:
        """Write what earlier appends could not; True when the file has every event."""
        with self.lock:
            try:
                self._write_pending()
            except OSError:
                return False
            return True

    def _write_pending(self) -> None:
        """All pending lines or none: a failed write is cut back to whole lines."""
        if not self.pending:
            return
        with self.path.open("ab") as fh:
            start = fh.tell()
            try:
                fh.write("".join(self.pending).encode("utf-8"))
                fh.flush()
            except OSError:
                try:
                    fh.truncate(start)
                except OSError:
                    pass  # _load cuts a torn last line on the next start
                raise
        self.pending.clear()

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
