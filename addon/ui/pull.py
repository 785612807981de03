"""The sidebar's Download Models lines, above the readiness line (Look > Quality): the
offer when the server lacks a quality's models, its size as a question, the download's
progress, its end. The operators are in operators/pull.py; this only draws their state."""

from __future__ import annotations

from ..operators import pull
from ..remote.pull_run import ASKED, ASKING, DONE, FAILED, PULLING
from .text_fit import wrapped


def draw(layout, context, answer: dict) -> None:
    """Below the readiness summary: the offer, the question, the progress."""
    run = pull.current(answer.get("preset", ""))
    quality = answer.get("quality") or "these presets"
    if run is None or run.state not in (ASKING, ASKED, PULLING, DONE, FAILED):
        if not answer.get("ready") and any(m.get("get") for m in answer.get("missing", [])):
            layout.operator(
                "storyshade.models_pull", text=f"Download Models for {quality}", icon="IMPORT"
            )
        return
    if run.state == ASKING:
        layout.label(text="Asking the server what is missing…", icon="TIME")
    elif run.state == ASKED:
        wrapped(layout, context, run.question(), "IMPORT")
        row = layout.row(align=True)
        row.operator("storyshade.models_pull", text="Download", icon="IMPORT").confirm = True
        row.operator("storyshade.models_pull_cancel", text="Cancel", icon="X")
    elif run.state == PULLING:
        layout.progress(factor=run.fraction, text=run.line())
        layout.operator("storyshade.models_pull_cancel", text="Cancel Download", icon="X")
    elif run.state == DONE:
        layout.label(text=f"Models for {run.quality} downloaded", icon="CHECKMARK")
    elif run.error is not None:
        wrapped(layout, context, run.error.problem, "ERROR")
        if run.error.fix:
            wrapped(layout, context, run.error.fix, "INFO")
        layout.operator("storyshade.models_pull", text="Try Again", icon="FILE_REFRESH")
