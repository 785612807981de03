"""The server's Ray workers: which is free, which has which models, and replacements.

Each slot holds one actor. A job goes to a free worker that already has its models (same
ModelKey: checkpoint, motion adapter, ControlNets; LoRAs and sampler are applied without a
reload), else to one that has none loaded, else to the one idle longest. A slot whose actor
died gets a new actor, which Ray places wherever a GPU (or CPU) is free: on a lost node's
survivors, or on the node again once it is back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from storyshade.cancel import CancelToken
from storyshade.errors import StoryShadeError

log = logging.getLogger("storyshade.cluster")
START_TRIES = 3  # a slot whose actor fails to start this many times in a row is given up


@dataclass
class Slot:
    name: str
    handle: Any = None
    state: str = "starting"  # starting | idle | busy | broken
    pid: int | None = None
    node: str | None = None
    device: str | None = None
    job: str | None = None
    models: list[Hashable] = field(default_factory=list)  # resident keys, most recent last
    loads: int = 0
    jobs: int = 0
    lost: int = 0
    start_failures: int = 0
    error: str | None = None
    since: float = field(default_factory=time.monotonic)

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "job": self.job,
            "pid": self.pid,
            "node": self.node,
            "device": self.device,
            "models_resident": len(self.models),
            "model_loads": self.loads,
            "jobs_done": self.jobs,
            "lost": self.lost,
            "error": self.error,
        }


class Pool:
    """`size` ShadeWorker actors with `options` (resources) and constructor `args`."""

    def __init__(self, size: int, options: dict[str, Any], args: tuple[Any, ...]) -> None:
        import ray

        from storyshade.cluster.worker import ShadeWorker

        self.actor = ray.remote(ShadeWorker).options(max_concurrency=4, **options)
        self.args = args
        self.cond = threading.Condition()
        self.slots = [Slot(f"w{i}") for i in range(size)]
        for slot in self.slots:
            self._spawn(slot)

    def _spawn(self, slot: Slot) -> None:
        handle = self.actor.remote(*self.args)
        slot.handle, slot.state, slot.job = handle, "starting", None
        slot.pid = slot.node = slot.device = None
        slot.models = []
        threading.Thread(target=self._await_ready, args=(slot, handle), daemon=True).start()

    def _await_ready(self, slot: Slot, handle: Any) -> None:
        """Wait (as long as Ray needs to find it a GPU) for a new actor to answer."""
        import ray

        try:
            info = ray.get(handle.info.remote())
        except ray.exceptions.RayError as exc:
            with self.cond:
                if slot.handle is not handle:
                    return
                slot.start_failures += 1
                slot.error = f"worker failed to start: {str(exc)[:500]}"
                log.error("Ray worker %s: %s", slot.name, slot.error)
                if slot.start_failures >= START_TRIES:
                    slot.state = "broken"
                    self.cond.notify_all()
                    return
            time.sleep(2.0 * slot.start_failures)
            with self.cond:
                if slot.handle is handle:
                    self._spawn(slot)
            return
        with self.cond:
            if slot.handle is handle:
                slot.pid, slot.node, slot.device = info["pid"], info["node"], info["device"]
                slot.state, slot.start_failures, slot.error = "idle", 0, None
                slot.since = time.monotonic()
                self.cond.notify_all()

    def acquire(self, job_id: str, key: Hashable | None, cancel: CancelToken) -> Slot | None:
        """A free worker for `job_id`, waiting for one; None if the job is cancelled first."""
        with self.cond:
            while not cancel.cancelled:
                idle = [s for s in self.slots if s.state == "idle"]
                if idle:
                    slot = self._choose(idle, key)
                    slot.state, slot.job = "busy", job_id
                    return slot
                if all(s.state == "broken" for s in self.slots):
                    raise StoryShadeError(
                        "no Ray worker could start: " + (self.slots[0].error or "unknown error"),
                        "every machine of the cluster needs the same storyshade and Ray "
                        "versions in the same Python (see docs/cluster.md); then restart the "
                        "server",
                        field=None,
                    )
                self.cond.wait(0.2)
            return None

    def busy(self) -> str | None:
        """Why a job would wait for a worker now ("w0 busy, w1 starting"), or None."""
        with self.cond:
            if any(s.state == "idle" for s in self.slots):
                return None
            return ", ".join(f"{s.name} {s.state}" for s in self.slots)

    @staticmethod
    def _choose(idle: list[Slot], key: Hashable | None) -> Slot:
        if key is not None:
            warm = [s for s in idle if key in s.models]
            if warm:
                return max(warm, key=lambda s: s.models.index(key))
        empty = [s for s in idle if not s.models]
        return empty[0] if empty else min(idle, key=lambda s: s.since)

    def release(self, slot: Slot, key: Hashable | None, resident: int, loads: int) -> None:
        """The job ended on a live worker: it is free again and now holds `key`."""
        with self.cond:
            if key is not None:
                slot.models = [k for k in slot.models if k != key] + [key]
            slot.models = slot.models[-resident:] if resident > 0 else []
            slot.loads = loads
            self._free(slot)

    def free(self, slot: Slot) -> None:
        """The job ended (cancelled, failed) on a live worker: it is free again."""
        with self.cond:
            self._free(slot)

    def _free(self, slot: Slot) -> None:
        slot.state, slot.job, slot.since = "idle", None, time.monotonic()
        slot.jobs += 1
        self.cond.notify_all()

    def lost(self, slot: Slot) -> None:
        """The worker died (process killed, node lost): end it for good and start another."""
        import ray

        log.warning(
            "Ray worker %s (pid %s on %s) lost; starting another", slot.name, slot.pid, slot.node
        )
        with self.cond:
            try:
                ray.kill(slot.handle, no_restart=True)
            except Exception:  # already gone, or its node is unreachable: nothing to stop
                pass
            slot.lost += 1
            self._spawn(slot)

    def public(self) -> list[dict[str, Any]]:
        with self.cond:
            return [slot.public() for slot in self.slots]

    def close(self) -> None:
        import ray

        with self.cond:
            for slot in self.slots:
                try:
                    ray.kill(slot.handle, no_restart=True)
                except Exception:
                    pass
