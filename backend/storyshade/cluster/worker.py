"""The Ray actor that renders: one per GPU (or CPU slot), models kept loaded between jobs.

A job arrives as the bundle's files (name → bytes) and its resolved settings (JSON), so a worker
needs no shared file system: it renders into a temporary folder and streams every event
back, each frame event carrying the PNG itself. Jobs end with exactly one of the events
`end`, `cancelled` or `error`. The actor is threaded so that `cancel` reaches it while
`render` runs; the render itself runs in a thread of its own that feeds the stream.
"""

from __future__ import annotations

import os
import queue
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from storyshade import allocator
from storyshade.cancel import CancelToken
from storyshade.errors import Cancelled, StoryShadeError
from storyshade.wire.layout import frame_name
from storyshade.wire.states import Event

ENDINGS = (Event.END, Event.CANCELLED, Event.ERROR)


def write_bundle(dest: Path, files: dict[str, bytes]) -> None:
    """The server's validated bundle files, by name, into `dest` (names stay inside it)."""
    root = dest.resolve()
    for name, data in files.items():
        target = (dest / name).resolve()
        if not target.is_relative_to(root) or target == root:
            raise StoryShadeError(f"unsafe bundle file name {name[:100]!r}", "report this bug")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


class ShadeWorker:
    """Renders jobs sent by the server's dispatcher (storyshade.cluster.dispatch)."""

    def __init__(self, threads: int, memory_bytes: int) -> None:
        allocator.configure()  # before torch and the models: as `storyshade` sets it
        # One torch thread per reserved CPU: several workers on one machine must not fight
        # over the same cores (Ray sets OMP_NUM_THREADS only for the actor's own process).
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        from storyshade.models.resident import ResidentModels

        torch.set_num_threads(threads)
        self.threads = threads
        self.models = ResidentModels(memory_bytes)
        self.cancels: dict[str, CancelToken] = {}
        self.lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        """Who this worker is: answered once it is ready (torch imported, device known)."""
        from storyshade.models.loader import pick_device

        return {
            "pid": os.getpid(),
            "node": socket.gethostname(),
            "device": pick_device(),
            "threads": self.threads,
        }

    def pid(self) -> int:
        return os.getpid()

    def cancel(self, job_id: str) -> None:
        """Stop `job_id` at its next step; a cancel that arrives before the job is kept."""
        with self.lock:
            self.cancels.setdefault(job_id, CancelToken()).cancel()

    def render(
        self,
        job_id: str,
        files: dict[str, bytes],
        settings_json: str,
        roots: list[str],
        models: Any = None,
    ) -> Iterator[dict[str, Any]]:
        """Stream the job's events (call with num_returns="streaming")."""
        with self.lock:
            cancel = self.cancels.setdefault(job_id, CancelToken())
        events: queue.Queue[dict[str, Any]] = queue.Queue()
        try:
            with tempfile.TemporaryDirectory(prefix="storyshade-job-") as tmp:
                folder = Path(tmp)
                write_bundle(folder / "bundle", files)
                args = (folder, settings_json, roots, models, events, cancel)
                thread = threading.Thread(target=self._run, args=args, daemon=True)
                thread.start()
                while True:
                    event = events.get()
                    if event["type"] == Event.FRAME:
                        png = folder / "frames" / frame_name(event["frame"])
                        event = {**event, "png": png.read_bytes()}
                    yield event
                    if event["type"] in ENDINGS:
                        break
                thread.join()
        finally:
            with self.lock:
                self.cancels.pop(job_id, None)

    def _run(
        self,
        folder: Path,
        settings_json: str,
        roots: list[str],
        models: Any,
        events: queue.Queue[dict[str, Any]],
        cancel: CancelToken,
    ) -> None:
        from storyshade.bundle import load_bundle
        from storyshade.job_input import prepare
        from storyshade.models.locate import model_roots
        from storyshade.models.relocate import relocate
        from storyshade.progress import Reporter
        from storyshade.references import resolve_paths
        from storyshade.render import render
        from storyshade.settings import Settings

        try:
            settings = Settings.model_validate_json(settings_json)
            here = [p for p in model_roots() if str(p) not in roots]  # this machine's own
            bundle = load_bundle(folder / "bundle")
            cancel.check()  # cancelled before it reached this worker
            every_root = [*map(Path, roots), *here]
            # the job's models, resolved once at submit, found under this worker's folders
            key = relocate(models, list(map(Path, roots)), every_root) if models else None
            settings = resolve_paths(settings, bundle.root)
            render(
                prepare(bundle, settings, every_root, models=key),
                folder / "frames",
                every_root,
                self.models,
                Reporter(events.put),
                cancel=cancel,
            )
        except Cancelled:
            events.put({"type": Event.CANCELLED})
        except StoryShadeError as exc:
            events.put({"type": "error", **exc.to_json()})
        except Exception as exc:  # the job fails, the worker lives on
            events.put(
                {
                    "type": "error",
                    "error": f"internal error on worker {socket.gethostname()} pid "
                    f"{os.getpid()}: {type(exc).__name__}: {str(exc)[:300]}",
                    "fix": "see the Ray worker log (docs/cluster.md); frames received so far "
                    "are kept",
                    "field": None,
                }
            )
        else:
            stats = self.models.stats()
            events.put({"type": "end", "resident": stats["resident"], "loads": stats["loads"]})
