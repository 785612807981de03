"""One shading run's data (TakeRun) and the small helpers around the shot bundle.

The run itself is split in two (see session.py): Blender exports and places the take on
the main thread, while worker.NetworkJob does every network call in a thread.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import protocol
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


def follow_job(client, run: TakeRun, progress: Progress, cancelled=lambda: False) -> None:
    """Follow an already submitted job to its end, blocking (kept for scripts and tests).

    Raises StoryShadeError if the job fails or is cancelled; frames already received stay.
    """
    from .worker import NetworkJob

    job = NetworkJob(client, run, None).start()
    while True:
        if cancelled() and not job.cancel_requested:
            job.cancel()
        for msg in job.drain(timeout=0.2):
            if msg.text:
                progress(msg.text)
            if msg.kind == protocol.FAILED:
                raise StoryShadeError(msg.text, msg.fix)
            if msg.kind == protocol.CANCELLED:
                raise StoryShadeError(msg.text)
            if msg.kind == protocol.DONE:
                return


def submit_bundle(client, bundle_dir: Path, run: TakeRun) -> None:
    job = client.submit(bundle_dir, run.settings)
    run.job_id = job["id"]


def describe(event: dict) -> str:
    return protocol.describe(event)[0]


def temp_bundle_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="storyshade-bundle-"))


def remove_bundle(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
