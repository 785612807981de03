"""Download Models from the sidebar: one pull on the server, step by step, off the main thread.

First the server's dry run says what is missing and how big it is; when the user confirms,
the pull runs as a job on the server (POST /v1/models/pull), followed on its event stream
for progress, cancelled with the job's DELETE. Never touches bpy: the panel reads the
fields, operators/pull.py drives it.
"""

from __future__ import annotations

import threading

from ..errors import StoryShadeError

ASKING, ASKED, PULLING, DONE, FAILED, CANCELLED = (
    "asking", "asked", "pulling", "done", "failed", "cancelled",
)  # fmt: skip
ACTIVE = (ASKING, PULLING)


def size_text(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _time_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


class PullRun:
    """One Download Models: `ask`, then `download`; `cancel` at any point."""

    def __init__(self, client, spec: str, quality: str) -> None:
        self.client, self.spec, self.quality = client, spec, quality
        self.state = ASKING
        self.plan: dict = {}
        self.job_id = ""
        self.progress: dict = {}
        self.error: StoryShadeError | None = None
        self._cancelled = threading.Event()
        self._thread: threading.Thread | None = None

    # -- steps ----------------------------------------------------------------------------
    def ask(self) -> None:
        self.state = ASKING
        self._start(self._ask)

    def download(self) -> None:
        self.state = PULLING
        self._start(self._download)

    def cancel(self) -> None:
        """Before the download: forget it. During: cancel the server's job, which keeps
        what it fetched for the next pull."""
        self._cancelled.set()
        if self.state in (ASKING, ASKED):
            self.state = CANCELLED
        elif self.state == PULLING and self.job_id:
            threading.Thread(target=self._cancel_job, daemon=True).start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _start(self, target) -> None:
        self._thread = threading.Thread(target=target, name="storyshade-pull", daemon=True)
        self._thread.start()

    def _ask(self) -> None:
        try:
            plan = self.client.pull_models([self.spec], dry_run=True)
        except StoryShadeError as exc:
            return self._fail(exc)
        if self._cancelled.is_set():
            return
        self.plan, self.state = plan, ASKED

    def _download(self) -> None:
        try:
            self.job_id = self.client.pull_models([self.spec])["id"]
            if self._cancelled.is_set():
                self._cancel_job()
            for event in self.client.events(self.job_id):
                if event.get("type") == "progress":
                    self.progress = event
                elif event.get("type") == "state" and event.get("state") in (
                    DONE,
                    FAILED,
                    CANCELLED,
                ):
                    error = event.get("error") or {}
                    if error:
                        self.error = StoryShadeError(
                            f"server: {error.get('error')}", error.get("fix") or ""
                        )
                    self.state = event["state"]
                    return
            self.state = FAILED
            self.error = StoryShadeError("the server's event stream ended early", "press Check")
        except StoryShadeError as exc:
            self._fail(exc)

    def _cancel_job(self) -> None:
        try:
            self.client.cancel(self.job_id)
        except StoryShadeError:
            pass  # the event stream says how it ended

    def _fail(self, exc: StoryShadeError) -> None:
        if getattr(exc, "status", None) == 404 and not self.job_id:
            exc = StoryShadeError(
                "this server cannot download models (it is older than the add-on)",
                f"update StoryShade there, or run `storyshade models pull {self.spec}` on it",
            )
        self.error, self.state = exc, FAILED

    # -- what the panel shows --------------------------------------------------------------
    @property
    def fraction(self) -> float:
        total = self.progress.get("total") or 0
        return min(1.0, self.progress.get("done", 0) / total) if total else 0.0

    def question(self) -> str:
        needed, free = self.plan.get("needed_bytes", 0), self.plan.get("free_bytes", 0)
        names = ", ".join(m["name"] for m in self.plan.get("models", []) if not m.get("present"))
        return f"Download {size_text(needed)} to the server ({size_text(free)} free there): {names}"

    def line(self) -> str:
        p = self.progress
        if not p:
            return "Starting the download on the server…"
        text = f"{size_text(p.get('done', 0))} of {size_text(p.get('total', 0))}"
        if p.get("rate"):
            text += f", {size_text(p['rate'])}/s"
        if p.get("eta_s") is not None:
            text += f", {_time_text(p['eta_s'])} left"
        return text
