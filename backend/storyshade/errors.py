"""One error type users see: what went wrong, and how to fix it.

Every layer (CLI, HTTP, engine) raises `StoryShadeError` for bad input so that the
message reaches the user intact instead of as a traceback.
"""

from __future__ import annotations


class StoryShadeError(Exception):
    """A problem the user can fix. `field` names the offending input where there is one."""

    status = 400

    def __init__(self, problem: str, fix: str = "", *, field: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        self.field = field
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = self.problem
        if self.field:
            text = f"{self.field}: {text}"
        if self.fix:
            text = f"{text} Fix: {self.fix}"
        return text

    def to_json(self) -> dict[str, str | None]:
        return {"error": self.problem, "fix": self.fix, "field": self.field}


class BundleError(StoryShadeError):
    """The shot bundle is malformed (bad shot.json field, missing or broken pass file)."""

    status = 422


class ModelError(StoryShadeError):
    """Models are missing, incomplete or incompatible with each other."""

    status = 422


class NotFound(StoryShadeError):
    status = 404


class Cancelled(Exception):
    """The job was cancelled; work produced so far is kept."""
