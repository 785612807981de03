"""Where a job renders: in this process (`LocalRunner`, the default) or elsewhere (the Ray
runner of `serve --ray`, storyshade.cluster.dispatch). The job store only queues, records
and relays; a runner turns one job's input into frames in its folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from storyshade.cache import StageCache
from storyshade.cancel import CancelToken
from storyshade.job_input import JobInput
from storyshade.models.loader import ModelCache
from storyshade.progress import Reporter
from storyshade.render import render


class Runner(Protocol):
    slots: int  # jobs it can run at once: the store gives it one worker thread each

    def render(
        self, job_id: str, job_dir: Path, work: JobInput, reporter: Reporter, cancel: CancelToken
    ) -> None:
        """Render `job_id` into `job_dir/frames`, reporting to `reporter`; raise `Cancelled`
        soon after `cancel` is cancelled."""
        ...


@dataclass
class LocalRunner:
    """Renders in this process through the stage cache, one job at a time (one GPU)."""

    roots: list[Path]
    models: ModelCache
    stages: StageCache | None = None
    slots: int = 1

    def render(
        self, job_id: str, job_dir: Path, work: JobInput, reporter: Reporter, cancel: CancelToken
    ) -> None:
        render(
            work, job_dir / "frames", self.roots, self.models, reporter, self.stages, cancel=cancel
        )
