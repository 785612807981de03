"""Names both sides match on: job states, progress stages and event types.

String enums, so a value is also the plain string that travels in JSON (`Stage.DENOISING
== "denoising"`) and old clients that compare strings keep working.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


class Stage(StrEnum):
    """What a job is doing, in the order a job does it (`progress` events' `stage`)."""

    QUEUED = "queued"
    RUNNING = "running"  # picked up, nothing measurable yet
    LOADING = "loading"  # models into memory
    READING = "reading passes"  # decoding the bundle's EXR passes
    CONTROLS = "controls"  # building the ControlNet conditioning images
    FRAMES = "frames"  # a stage-cache note: finished frames reused
    DENOISING = "denoising"
    REFINING = "refining"  # the hires pass
    SHADING = "shading"  # the model-free preview engine
    DECODING = "decoding"  # latents to pictures
    SAVING = "saving"  # pictures to PNG files
    DOWNLOADING = "downloading"  # a model pull: done/total are bytes (`storyshade models pull`)


# Stages whose amount is unknown up front: a client shows a busy bar, not a fraction.
INDETERMINATE = frozenset({Stage.QUEUED, Stage.RUNNING, Stage.LOADING})
# Stages an ETA can be read from (the job's pace there predicts its end).
LATE = (Stage.DENOISING, Stage.REFINING, Stage.DECODING, Stage.SAVING)


class Event(StrEnum):
    """The `type` of an event on a job's stream (SSE, the CLI, a Ray worker's queue)."""

    STATE = "state"  # the job's state changed
    PROGRESS = "progress"  # a stage advanced: stage, done, total, ...
    NOTE = "note"  # a one-off remark (a cache hit, a fallback)
    FRAME = "frame"  # a shaded frame is on disk
    PREVIEW = "preview"  # a rough in-progress picture from the denoiser
    END = "end"  # a worker finished the job
    ERROR = "error"  # a worker failed the job
    CANCELLED = "cancelled"  # a worker stopped on cancel
