"""Job records on disk: what survives a restart.

Layout under the data folder, one folder per job, `jobs/<id>/`:

- `job.json`: the record (state, priority, frames done...), replaced atomically; written
  last at submission, so a folder without it is an upload that never finished;
- `settings.json`: the resolved settings; `bundle/`: the upload, unpacked and validated;
- `frames/NNNN.png`: results, each written atomically as it finishes;
- `events.jsonl`: progress history (server/events.py), replayed to clients that
  reconnect.

Every record is read back through one schema (`RECORD` for job.json, `Settings` for
settings.json), at submit as on load: what the server accepted is what a restart finds. A
folder whose files do not pass is moved to `jobs/damaged/` with a log line, and the server
starts with the rest.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from storyshade.errors import StoryShadeError
from storyshade.settings import Settings
from storyshade.wire.layout import frame_name
from storyshade.wire.states import JobState

log = logging.getLogger("storyshade.server")

DAMAGED = "damaged"  # jobs/damaged/<id>: folders whose records could not be read back

Finite = Annotated[float, Field(allow_inf_nan=False)]
Progress = str | int | Finite | bool | None


class JobError(TypedDict):
    """A failed job's reason, as every error body: what, how to fix it, which input."""

    error: str
    fix: str
    field: str | None


@dataclass
class Job:
    id: str
    shot: str
    state: JobState = JobState.QUEUED
    priority: Annotated[int, Field(ge=-100, le=100)] = 0
    seq: Annotated[int, Field(ge=0)] = 0
    tag: str = ""
    preset: str | None = None
    engine: str = ""
    created: Finite = field(default_factory=time.time)
    started: Finite | None = None
    finished: Finite | None = None
    frame_numbers: list[int] = field(default_factory=list)
    frames_done: list[int] = field(default_factory=list)
    error: JobError | None = None
    progress: dict[str, Progress] = field(default_factory=dict)
    attempts: Annotated[int, Field(ge=0)] = 0
    cancel_requested: bool = False
    reused: list[str] = field(default_factory=list)
    owner: str | None = None  # the named client that submitted it (serve --clients)
    bundle_hash: str = ""  # the bundle's content hash, taken once at submit
    kind: str = "render"  # "pull": a model download (server/pulls.py, its own folder)


RECORD = TypeAdapter(Job)  # job.json's schema: strict types, unknown keys ignored


def read_record(text: str | bytes) -> Job:
    """A job.json as a Job, or ValidationError: strict (a string is never a number)."""
    return RECORD.validate_json(text, strict=True)


def record_text(job: Job) -> str:
    """job.json for `job`, checked to read back (a record a restart could not load is a
    bug, raised here rather than found at the next start)."""
    text = json.dumps(asdict(job), indent=1, allow_nan=False)
    read_record(text)
    return text


def settings_text(settings: Settings) -> str:
    """settings.json for `settings`, read back through the schema a restart reads it with:
    a value the job was accepted with but could not be loaded again is a 400 now."""
    text = settings.model_dump_json(indent=1)
    try:
        Settings.model_validate_json(text)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        problem, fix = err["msg"], "correct the value or the preset that sets it"
        if where == "prompt":
            limit = Settings.model_fields["prompt"].metadata[0].max_length
            problem = (
                f"the prompt with the style's prefix and suffix is {len(settings.prompt)} "
                f"characters, over the limit of {limit}"
            )
            fix = (
                f"shorten the prompt by {len(settings.prompt) - limit} characters (the style "
                "preset adds its prefix and suffix to it)"
            )
        raise StoryShadeError(problem, fix, field=f"settings.{where}") from None
    return text


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
        text = settings_text(settings)
        (self.job_dir(job_id) / "settings.json").write_text(text, encoding="utf-8")

    def save(self, job: Job) -> None:
        path = self.job_dir(job.id) / "job.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(record_text(job), encoding="utf-8")
        tmp.replace(path)

    def read(self, folder: Path) -> tuple[Job, Settings]:
        """One job folder's record and settings; raises on anything that does not pass."""
        job = read_record((folder / "job.json").read_bytes())
        if job.id != folder.name:
            raise ValueError(f"job.json names job '{job.id[:40]}', not its folder")
        settings = Settings.model_validate_json((folder / "settings.json").read_bytes())
        return job, settings

    def damaged(self, folder: Path, why: object) -> Path:
        """Move a job folder that cannot be read back out of the way, saying so."""
        target = self.root / DAMAGED / folder.name
        if target.exists():
            target = target.with_name(f"{folder.name}.{time.time_ns()}")
        target.parent.mkdir(exist_ok=True)
        shutil.move(str(folder), str(target))
        log.warning("job %s is damaged (%s): moved to %s", folder.name, why, target)
        return target

    def load(self) -> list[tuple[Job, Settings]]:
        """Every job a previous process left, oldest first. Half-finished uploads are
        removed, half-written frames dropped, damaged folders moved to jobs/damaged/."""
        found = []
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir() or folder.name == DAMAGED:
                continue
            record = folder / "job.json"
            if not record.exists():  # an upload cut short by a crash: it was never a job
                shutil.rmtree(folder, ignore_errors=True)
                continue
            try:
                job, settings = self.read(folder)
            except (OSError, ValueError) as exc:  # ValidationError and bad UTF-8 are both
                self.damaged(folder, _reason(exc))
                continue
            for tmp in (folder / "frames").glob("*.tmp"):
                tmp.unlink(missing_ok=True)
            found.append((job, settings))
        found.sort(key=lambda js: (js[0].seq, js[0].created))
        return found


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "the record"
        return f"{exc.title}: {where}: {err['msg']}"
    return f"{type(exc).__name__}: {str(exc)[:200]}"
