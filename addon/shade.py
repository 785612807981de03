"""Shade a shot end to end: export → submit → follow progress → fetch frames → take strip.

Split into steps so the headless CLI runs them in a row while the sidebar operator runs
export on a modal timer and the network part in a worker thread (see operators.py).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .client import Client
from .errors import StoryShadeError

Progress = Callable[[str], None]


@dataclass
class TakeRun:
    """Where one run's frames go, and what the server made of it."""

    shot: str
    take: str
    folder: Path
    temporary: bool
    frames: list[int]
    job_id: str = ""
    received: list[int] = field(default_factory=list)
    settings: dict = field(default_factory=dict)


def follow_job(client: Client, run: TakeRun, progress: Progress, cancelled=lambda: False) -> None:
    """Stream events, writing each finished frame into the take folder as it arrives.

    Raises StoryShadeError if the job fails or is cancelled; frames already received stay.
    """
    last = 0
    while True:
        state = None
        for event in client.events(run.job_id, last):
            last = event.get("id", last)
            if cancelled():
                client.cancel(run.job_id)
            kind = event.get("type")
            if kind == "frame":
                frame = event["frame"]
                (run.folder / f"{frame:04d}.png").write_bytes(client.frame(run.job_id, frame))
                run.received.append(frame)
                progress(f"Receiving {len(run.received)}/{len(run.frames)}")
            elif kind == "progress":
                progress(describe(event))
            elif kind == "note":
                progress(event.get("message", ""))
            elif kind == "state" and event["state"] in ("done", "failed", "cancelled"):
                state = event
        if state is not None:
            break
        if client.job(run.job_id)["state"] in ("done", "failed", "cancelled"):
            continue  # stream ended early; replay from `last` to read the final state
    if state["state"] == "failed":
        err = state.get("error") or {}
        raise StoryShadeError(
            f"the server could not shade the shot: {err.get('error', 'unknown error')} "
            f"({len(run.received)} frames kept in {run.folder})",
            err.get("fix") or "",
        )
    if state["state"] == "cancelled":
        raise StoryShadeError(f"cancelled; {len(run.received)} frames kept in {run.folder}")
    missing = [f for f in run.frames if f not in run.received]
    for frame in missing:  # e.g. a reconnect skipped events
        (run.folder / f"{frame:04d}.png").write_bytes(client.frame(run.job_id, frame))
        run.received.append(frame)


def describe(event: dict) -> str:
    stage = event.get("stage", "")
    done, total = event.get("done", 0), event.get("total", 0)
    labels = {
        "controls": "Preparing controls",
        "loading": "Loading models",
        "denoising": "Denoising",
        "decoding": "Decoding",
        "saving": "Saving",
        "queued": "Queued",
    }
    text = f"{labels.get(stage, stage.capitalize())} {done}/{total}"
    if "window" in event:
        text += f" (window {event['window']}/{event.get('windows', '?')})"
    return text


def submit_bundle(client: Client, bundle_dir: Path, run: TakeRun) -> None:
    job = client.submit(bundle_dir, run.settings)
    run.job_id = job["id"]


def temp_bundle_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="storyshade-bundle-"))


def remove_bundle(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
