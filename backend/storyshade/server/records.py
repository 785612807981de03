"""Job records on disk: what survives a restart.

Layout under the data folder, one folder per job, `jobs/<id>/`:

- `job.json`: the record (state, priority, frames done...), replaced atomically; written
  last at submission, so a folder without it is an upload that never finished;
- `settings.json`: the resolved settings; `bundle/`: the upload, unpacked and validated;
- `frames/NNNN.png`: results, each written atomically as it finishes;
- `events.jsonl`: progress history (server/events.py), replayed to SSE clients that
  reconnect.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from storyshade.settings import Settings
from storyshade.wire.layout import frame_name
from storyshade.wire.states import JobState

log = logging.getLogger("storyshade.server")


@dataclass
class Job:
    id: str
    shot: str
    state: str = JobState.QUEUED
    priority: int = 0
    seq: int = 0
    tag: str = ""
    preset: str | None = None
    engine: str = ""
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    frame_numbers: list[int] = field(default_factory=list)
    frames_done: list[int] = field(default_factory=list)
    error: dict[str, Any] | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    cancel_requested: bool = False
    reused: list[str] = field(default_factory=list)
    owner: str | None = None  # the named client that submitted it (serve --clients)
    bundle_hash: str = ""  # the bundle's content hash, taken once at submit
    kind: str = "render"  # "pull": a model download (server/pulls.py, its own folder)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class Records:
    """The jobs folder: one folder per job, its record written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def frame_path(self, job_id: str, frame: int) -> Path:
        return self.job_dir(job_id) / "frames" / frame_name(frame)

    def write_settings(self, job_id: str, settings: Settings) -> None:
        path = self.job_dir(job_id) / "settings.json"
        path.write_text(settings.model_dump_json(indent=1), encoding="utf-8")

    def save(self, job: Job) -> None:
        path = self.job_dir(job.id) / "job.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(job), indent=1), encoding="utf-8")
        tmp.replace(path)

    def load(self) -> list[tuple[Job, Settings]]:
        """Every job a previous process left, oldest first. Half-finished uploads are
        removed, half-written frames dropped, unreadable folders skipped with a warning."""
        found = []
        for folder in self.root.iterdir():
            if not folder.is_dir():
                continue
            record = folder / "job.json"
            if not record.is_file():  # an upload cut short by a crash: it was never a job
                shutil.rmtree(folder, ignore_errors=True)
                continue
            try:
                job = Job.from_json(json.loads(record.read_text(encoding="utf-8")))
                settings = Settings.model_validate_json(
                    (folder / "settings.json").read_text(encoding="utf-8")
                )
            except (OSError, ValueError, TypeError) as exc:
                log.warning("skipping unreadable job %s: %s", folder.name, exc)
                continue
            for tmp in (folder / "frames").glob("*.tmp"):
                tmp.unlink(missing_ok=True)
            found.append((job, settings))
        found.sort(key=lambda js: (js[0].seq, js[0].created))
        return found
