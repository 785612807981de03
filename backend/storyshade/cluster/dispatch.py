"""The JobStore runner for `storyshade serve --ray`: jobs rendered by Ray workers.

The server keeps every record: each frame a worker streams back is written into the job's
own frames folder here, and its event goes through the same listener as a local render, so
the HTTP API, job records, SSE and cancel behave exactly as with one local GPU.

A worker lost mid-job (process killed, node gone) costs only time: the job goes back to
the pool and runs again on another worker. Frames received from the lost attempt stay;
the retry's copy of a frame already received is dropped, so each frame is written and
announced once. A job whose worker dies MAX_LOSSES times is failed (it may be what kills
them) rather than taking the whole pool down one worker at a time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from storyshade.cache import StageCache, through_stages
from storyshade.cancel import CancelToken
from storyshade.cluster.connect import cluster_size, connect
from storyshade.cluster.pool import Pool, Slot
from storyshade.errors import Cancelled, StoryShadeError
from storyshade.job_input import JobInput
from storyshade.progress import Reporter
from storyshade.settings import Settings
from storyshade.wire.layout import MANIFEST, frame_name
from storyshade.wire.states import Event

log = logging.getLogger("storyshade.cluster")
MAX_LOSSES = 3


class WorkerLost(Exception):
    """The actor running a job is gone; the job can run again elsewhere."""


def for_worker(work: JobInput) -> tuple[dict[str, bytes], Settings]:
    """What a worker needs, by name in the bundle: shot.json, each frame's pass and held
    picture, and the reference images inside it, with the settings naming those images
    relative to the bundle (the worker's folder is not this one). The files are sent once
    per job through Ray's object store (a retry reuses them), as bytes: no zip to build
    here or to open there."""
    bundle, settings = work.bundle, work.settings
    names = [MANIFEST, *(n for e in bundle.shot.frames for n in (e.file, e.take) if n)]
    root = bundle.root.resolve()

    def inside(path: str) -> str:
        image = Path(path).resolve()
        if not image.is_relative_to(root):
            return path  # elsewhere on the server: the worker must share that path
        names.append(image.relative_to(root).as_posix())
        return names[-1]

    update: dict[str, Any] = {
        "references": [r.model_copy(update={"image": inside(r.image)}) for r in settings.references]
    }
    cm = settings.color_match
    if cm is not None and cm.image is not None:
        update["color_match"] = cm.model_copy(update={"image": inside(cm.image)})
    files = {name: (bundle.root / name).read_bytes() for name in dict.fromkeys(names)}
    return files, settings.model_copy(update=update)


class RayRunner:
    """Runs JobStore jobs on a pool of Ray workers; `slots` jobs at a time."""

    def __init__(
        self, pool: Pool, roots: list[Path], stages: StageCache | None, cluster: dict[str, Any]
    ) -> None:
        self.pool = pool
        self.roots = roots
        self.stages = stages
        self.cluster = cluster

    @classmethod
    def start(
        cls,
        address: str,
        workers: int,
        roots: list[Path],
        stages: StageCache | None,
        memory_bytes: int,
    ) -> RayRunner:
        """Join (or start) the cluster and start one worker per GPU, else per CPU."""
        cluster = connect(address)
        gpus, cpus = cluster_size()
        count = workers or gpus or max(1, cpus)
        options: dict[str, Any] = {"num_cpus": 1}
        if gpus:
            options["num_gpus"] = 1
        cluster.update(gpus=gpus, cpus=cpus, workers=count)
        each = "1 GPU" if gpus else "1 CPU"
        log.warning(
            "Ray cluster %s: %d GPU, %d CPU; starting %d workers (%s each)",
            cluster["address"],
            gpus,
            cpus,
            count,
            each,
        )
        return cls(Pool(count, options, (1, memory_bytes)), roots, stages, cluster)

    @property
    def slots(self) -> int:
        return len(self.pool.slots)

    def stats(self) -> dict[str, Any]:
        return {**self.cluster, "pool": self.pool.public()}

    def close(self) -> None:
        self.pool.close()

    # -- one job ---------------------------------------------------------------------------
    def render(
        self, job_id: str, job_dir: Path, work: JobInput, reporter: Reporter, cancel: CancelToken
    ) -> None:
        """Render `job_id` on the pool into `job_dir/frames`; raises as render does. An
        identical rerun never leaves the server: the stage cache is the local path's own.
        A cancel stops the wait for a worker, or is relayed to the worker running the job."""
        frames_dir = job_dir / "frames"
        frames_dir.mkdir(parents=True, exist_ok=True)
        through_stages(
            self.stages,
            work,
            self.roots,
            frames_dir,
            reporter,
            lambda _keys: self._on_pool(job_id, work, frames_dir, reporter, cancel),
            cancel=cancel,
        )

    def _on_pool(
        self,
        job_id: str,
        work: JobInput,
        frames_dir: Path,
        reporter: Reporter,
        cancel: CancelToken,
    ) -> list[Path]:
        import ray

        bundle = work.bundle
        key = work.models  # what a worker must have loaded to start at once (None: none)
        files, settings = for_worker(work)
        payload = ray.put(files)
        received: dict[int, Path] = {}
        losses = 0
        while True:
            cancel.check()
            busy = self.pool.busy()
            if busy:
                reporter.note(f"waiting for a free Ray worker ({busy})", waiting=True)
            slot = self.pool.acquire(job_id, key, cancel)
            if slot is None:
                raise Cancelled()
            try:
                self._attempt(
                    slot, job_id, payload, settings, reporter, cancel, received, frames_dir, key
                )
                break
            except WorkerLost as exc:
                name, pid, node = slot.name, slot.pid, slot.node
                self.pool.lost(slot)  # a new actor takes the slot
                losses += 1
                if len(received) == len(bundle.shot.generated_frames):
                    reporter.note(
                        f"worker {name} was lost after sending every frame; nothing lost",
                        worker=name,
                    )
                    break
                cancel.check()
                if losses >= MAX_LOSSES:
                    raise StoryShadeError(
                        f"{losses} workers died while running this job (last: {exc})",
                        "check the Ray worker logs and GPU memory (docs/cluster.md); "
                        f"{len(received)} frames received are kept",
                        field=None,
                    ) from None
                reporter.note(
                    f"worker {name} (pid {pid} on {node}) was lost mid-job: "
                    f"re-queued on another worker; {len(received)} frames already received "
                    "are kept",
                    requeued=True,
                    worker=name,
                    pid=pid,
                    losses=losses,
                    frames_kept=sorted(received),
                )
        return [received[f] for f in sorted(received)]

    def _attempt(
        self,
        slot: Slot,
        job_id: str,
        payload: Any,
        settings: Settings,
        reporter: Reporter,
        cancel: CancelToken,
        received: dict[int, Path],
        frames_dir: Path,
        key: Hashable | None,
    ) -> None:
        """One run of the job on `slot`'s worker, relaying its stream; frees the worker
        unless it was lost (WorkerLost)."""
        import ray

        reporter.note(
            f"running on Ray worker {slot.name} (pid {slot.pid} on {slot.node}, {slot.device})",
            worker=slot.name,
            pid=slot.pid,
            node=slot.node,
        )
        handle = slot.handle
        finished = threading.Event()
        relay_args = (handle, job_id, cancel, finished)
        threading.Thread(target=_relay_cancel, args=relay_args, daemon=True).start()
        lost = (
            ray.exceptions.RayActorError,
            ray.exceptions.WorkerCrashedError,
            ray.exceptions.ObjectLostError,
            ray.exceptions.NodeDiedError,
        )
        outcome: dict[str, Any] | None = None
        try:
            stream = handle.render.options(num_returns="streaming").remote(
                job_id, payload, settings.model_dump_json(), [str(r) for r in self.roots], key
            )
            for ref in stream:
                event = ray.get(ref)
                if event["type"] == Event.FRAME:
                    self._frame(event, received, frames_dir, reporter)
                elif event["type"] in (Event.END, Event.CANCELLED, Event.ERROR):
                    outcome = event
                else:
                    reporter.emit(event)
        except lost as exc:
            raise WorkerLost(f"{type(exc).__name__} on worker {slot.name}") from exc
        except BaseException:  # e.g. this disk is full: stop the worker's run, free it, fail
            _cancel_quietly(handle, job_id)
            self.pool.free(slot)
            raise
        finally:
            finished.set()
        if outcome is None:
            raise WorkerLost(f"worker {slot.name} ended the job without a result")
        if outcome["type"] == "end":
            self.pool.release(slot, key, outcome["resident"], outcome["loads"])
            return
        self.pool.free(slot)
        if outcome["type"] == Event.CANCELLED:
            raise Cancelled()
        raise StoryShadeError(outcome["error"], outcome.get("fix") or "", field=outcome["field"])

    @staticmethod
    def _frame(
        event: dict[str, Any], received: dict[int, Path], frames_dir: Path, reporter: Reporter
    ) -> None:
        """Write a streamed frame into the job's folder and announce it, once per frame."""
        frame, png = event["frame"], event.pop("png")
        if frame in received:  # a re-queued run renders it again: the first copy stands
            return
        path = frames_dir / frame_name(frame)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(png)
        tmp.replace(path)
        received[frame] = path
        reporter.emit(event)


def _relay_cancel(handle: Any, job_id: str, cancel: CancelToken, finished: threading.Event) -> None:
    """Pass a cancel to the worker running the job (its own thread: `render` is busy)."""
    while not finished.wait(0.05):
        if cancel.cancelled:
            _cancel_quietly(handle, job_id)
            return


def _cancel_quietly(handle: Any, job_id: str) -> None:
    try:
        handle.cancel.remote(job_id)
    except Exception:  # the worker is gone: its stream says so
        pass
