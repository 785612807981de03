"""Messages from the network worker thread to Blender's main thread.

The worker never touches bpy: it only puts `Message`s on a `queue.Queue`; the main thread
(a modal operator's timer, or a blocking loop in background mode) drains them and updates
Blender. Pure Python, so tests drive it without Blender's event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..wire.states import Stage

# Message kinds. Terminal kinds end the worker; nothing follows them on the queue.
SUBMITTED = "submitted"  # job_id set: the server accepted the bundle
PROGRESS = "progress"  # text/fraction: a server stage advanced (queued, denoising, ...)
NOTE = "note"  # text: a one-off remark from the server
FRAME = "frame"  # frame/path: a shaded frame is on disk in the take folder
PREVIEW = "preview"  # path: a rough in-progress image from the denoiser is on disk
DONE = "done"  # every frame of the shot is on disk
FAILED = "failed"  # text/fix: plain-words problem and how to fix it
CANCELLED = "cancelled"  # the job was cancelled (by us or on the server)
TERMINAL = frozenset({DONE, FAILED, CANCELLED})


@dataclass(frozen=True)
class Message:
    kind: str
    text: str = ""
    fraction: float = 0.0
    stage: str = ""
    job_id: str = ""
    frame: int | None = None
    path: str = ""
    received: int = 0
    total: int = 0
    fix: str = ""
    data: dict = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.kind in TERMINAL


STAGE_LABELS = {
    Stage.QUEUED: "Queued",
    Stage.LOADING: "Loading models",
    Stage.READING: "Reading passes",
    Stage.CONTROLS: "Preparing controls",
    Stage.DENOISING: "Denoising",
    Stage.REFINING: "Refining (hires)",
    Stage.SHADING: "Shading",
    Stage.DECODING: "Decoding",
    Stage.SAVING: "Saving",
}


def describe(event: dict) -> tuple[str, float]:
    """Stage text and bar fraction for a server `progress` event.

    Windowed denoising reads "Denoising step 12/20, window 3/7" and its fraction spans all
    windows, so the bar does not jump back to zero at each window.
    """
    text, fraction = _describe(event)
    eta = event.get("eta_s", event.get("eta_start_s"))
    if isinstance(eta, int | float) and eta > 0:
        text += f" ({_duration(eta)} {'left' if 'eta_s' in event else 'to start'})"
    return text, fraction


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"~{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"~{round(seconds / 60)} min"
    return f"~{seconds / 3600:.1f} h"


def _describe(event: dict) -> tuple[str, float]:
    stage = str(event.get("stage", ""))
    done, total = int(event.get("done", 0) or 0), int(event.get("total", 0) or 0)
    label = STAGE_LABELS.get(stage, stage.replace("_", " ").capitalize() or "Working")
    fraction = done / total if total > 0 else 0.0
    if stage == Stage.QUEUED:  # the server's place in line: 1 = next to run
        return queued_text(event.get("position") or done or None), 0.0
    if stage == Stage.LOADING:
        return label, fraction
    if event.get("window") and event.get("windows") and event.get("step"):
        # Windowed sampling: done/total already count every (step, window) pair.
        # Step first: steps go 1, 2, ... while windows cycle within each step, so
        # "step 2/20, window 1/7" reads as progress where "window 1/7 step 2/20" did not.
        text = (
            f"{label} step {event['step']}/{event.get('steps', '?')}, "
            f"window {event['window']}/{event['windows']}"
        )
        return text, min(max(fraction, 0.0), 1.0)
    if "window" in event and event.get("windows"):
        window, windows = int(event["window"]), int(event["windows"])
        fraction = ((window - 1) + fraction) / windows
        return f"{label} step {done}/{total}, window {window}/{windows}", min(max(fraction, 0), 1)
    if stage == Stage.DENOISING:
        return f"{label} step {done}/{total}", fraction
    return f"{label} {done}/{total}", fraction


def queued_text(position: int | None) -> str:
    return f"Queued #{position}" if position else "Queued"


def queue_position(jobs: list[dict], job_id: str) -> int | None:
    """Our place in line, 1 = next to run: the server's own count when it gives one,
    else 1 + the queued jobs submitted before ours."""
    ours = next((j for j in jobs if j.get("id") == job_id), None)
    if ours is None:
        return None
    if ours.get("position"):
        return int(ours["position"])
    ahead = [
        j
        for j in jobs
        if j.get("id") != job_id
        and j.get("state") == "queued"
        and j.get("created", 0) < ours.get("created", 0)
    ]
    return len(ahead) + 1
