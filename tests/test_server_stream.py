"""A job's event stream and its final event: a job's state turns final before its final
event is written (a client that reads the event and then asks for the job must find it
ended), so the stream waits for that event instead of ending without it. Against the real
event log, with the job as the stream sees it (its state) and a writer thread."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from storyshade.server import routes_jobs
from storyshade.server.events import EventLog


def _follow(log: EventLog, job: SimpleNamespace) -> list[str]:
    store = SimpleNamespace(jobs={"j1": job}, logs={"j1": log})

    async def read() -> list[str]:
        return [chunk async for chunk in routes_jobs._stream(store, "j1", 0)]

    return asyncio.run(read())


def test_the_stream_waits_for_the_final_event_of_a_job_already_ended(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl")
    log.append("j1", {"type": "state", "state": "running"})
    job = SimpleNamespace(state="cancelled")  # the state is final; its event not yet written
    writer = threading.Timer(0.3, log.append, ("j1", {"type": "state", "state": "cancelled"}))
    writer.start()
    chunks = _follow(log, job)
    writer.join()
    events = [c for c in chunks if c.startswith("id:")]
    assert len(events) == 2 and '"state": "cancelled"' in events[-1]


def test_a_final_event_the_log_never_got_ends_the_stream_anyway(tmp_path: Path) -> None:
    """A full disk can keep the final event out of the log: the stream still ends."""
    log = EventLog(tmp_path / "events.jsonl")
    log.append("j1", {"type": "state", "state": "running"})
    began = time.monotonic()
    chunks = _follow(log, SimpleNamespace(state="failed"))
    assert time.monotonic() - began < routes_jobs.FINAL_EVENT_S + 1.5
    assert len([c for c in chunks if c.startswith("id:")]) == 1
