"""One shading run's take: where its frames go and what the server made of it (TakeRun),
the job record a later Blender reattaches by, and the run's temporary bundle folder.

The run itself is split in two (see session/shade.py): Blender exports and places the take
on the main thread, while remote/worker.py's NetworkJob does every network call in a
thread. No bpy here.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..wire.layout import frame_name

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
    strip: str = ""  # the take strip's name, `<shot>_<take>`: the job's tag on the server


JOB_RECORD = "job.json"


def write_job_record(run: TakeRun, state: str = "submitted") -> None:
    """Note the server job in the take folder, so a later Blender session can reattach
    (the job keeps running on the server when Blender quits or crashes)."""
    record = {
        "job": run.job_id,
        "shot": run.shot,
        "take": run.take,
        "frames": run.frames,
        "settings": run.settings,
        "state": state,
    }
    path = Path(run.folder) / JOB_RECORD
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    tmp.replace(path)


def unplaced_runs(takes_root: Path) -> list[TakeRun]:
    """Runs submitted from this shot whose take strip was never placed, oldest first."""
    runs = []
    for path in sorted(Path(takes_root).glob(f"take_*/{JOB_RECORD}")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if rec.get("state") != "submitted" or not rec.get("job"):
            continue
        folder = path.parent
        frames = [int(f) for f in rec.get("frames", [])]
        received = [f for f in frames if (folder / frame_name(f)).is_file()]
        runs.append(
            TakeRun(
                rec.get("shot", ""),
                rec.get("take", folder.name),
                folder,
                False,
                frames,
                job_id=str(rec["job"]),
                received=received,
                settings=rec.get("settings", {}),
            )
        )
    return runs


def temp_bundle_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="storyshade-bundle-"))


def remove_bundle(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


TAKE_LEFTOVERS = (JOB_RECORD, "_preview.png")


def discard_take_folder(folder: Path) -> bool:
    """Remove a take folder that holds no frames: only the files a run itself leaves
    (job record, preview, half-written parts); anything else keeps the folder."""
    folder = Path(folder)
    try:
        for path in folder.iterdir():
            if path.name in TAKE_LEFTOVERS or path.name.endswith(".part"):
                path.unlink(missing_ok=True)
        folder.rmdir()
    except OSError:
        return False
    return True
