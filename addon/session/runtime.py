"""What lives only while Blender runs (never saved in the .blend): the shading run in
progress, the local server this Blender started, the last server health answer, and what
the sidebar says about each scene's last run.

Status is kept here and not in the scene's settings: a saved status came back when the
file was opened again ("Take ... added" from another day), and nothing cleared an error
once its cause was gone. Here a file load clears it (handlers.py), a save clears the
"not saved" note, and a good server check hides a "cannot reach" error.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from ..remote.server_local import HealthCheck, LocalServer

current = None  # session.ShadeSession of the run in progress, if any
sequence = None  # sequence.SequenceRun of the last Shade Sequence, if any
local_server = LocalServer()
health = HealthCheck()


def busy() -> bool:
    return current is not None and current.running


def end_run() -> None:
    """The add-on is going: a run in progress ends (a job already on the server keeps
    running there; Reattach picks it up)."""
    global current
    if current is not None:
        current.abandon()
        current = None


@dataclass
class Status:
    """What the sidebar shows under Shade for one scene."""

    text: str = ""
    fix: str = ""
    note: str = ""
    progress: float = 0.0
    progress_known: bool = False
    is_error: bool = False
    preview_path: str = ""
    job_id: str = ""
    unreachable: bool = False  # the error is "cannot reach the server": a good Check ends it
    unsaved_note: bool = False  # the note says the .blend is not saved: a save ends it
    bank_note: str = ""  # the character bank's last answer (Object Looks > Character Bank)
    bank_error: bool = False
    at: float = field(default_factory=time.time)


_status: dict[str, Status] = {}


def status(scene) -> Status:
    """The scene's status, created empty on first use (the scene's name is the key: undo
    and file loads replace scene datablocks, never their names)."""
    return _status.setdefault(scene.name, Status())


def peek(scene) -> Status:
    """The scene's status for drawing: an empty one if there is none (nothing is stored)."""
    return _status.get(scene.name) or Status()


def set_error(scene, problem: str, fix: str = "", unreachable: bool = False) -> Status:
    st = status(scene)
    st.text, st.fix, st.is_error, st.unreachable = problem, fix, True, unreachable
    st.at = time.time()
    return st


def shown_error(st: Status) -> bool:
    """Whether the status's error still applies: a "cannot reach the server" error ends
    when a later check reached it."""
    if not st.is_error:
        return False
    if st.unreachable and health.error is None and health.result is not None:
        return health.checked_at < st.at
    return True


def forget_unsaved_notes() -> None:
    """The .blend was saved: the notes saying it is not are wrong now."""
    for st in _status.values():
        if st.unsaved_note:
            st.note, st.unsaved_note = "", False


def take_moved(names: dict[str, str], old: str, new: str) -> None:
    """A take moved beside the saved .blend, its strip renamed (`names`: before → after):
    the status says the new name and the preview shows the frame where it is now."""
    for st in _status.values():
        for before, after in names.items():
            st.text = st.text.replace(before, after)
        if st.preview_path.startswith(old.rstrip("/\\") + os.sep):
            st.preview_path = new + st.preview_path[len(old) :]


def clear() -> None:
    """Another file was loaded: nothing said about the last one applies."""
    _status.clear()
