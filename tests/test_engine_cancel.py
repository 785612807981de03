"""Cancel lands within one model call: a real job store, tiny real models, a long step.

The user's cancel arrives (from another thread, as the HTTP handler sends it) while the
first of two ControlNets of a window is running. Before per-call checks the rest of that
window (the second ControlNet and the UNet) still ran; now the job stops before the next
model call, and its events say so.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from conftest import write_synthetic_bundle
from storyshade.bundle import load_bundle
from storyshade.models.loader import ModelCache, model_key
from storyshade.presets import resolve
from storyshade.server.jobs import TERMINAL, JobStore

FRAMES = 16


def test_cancel_during_a_step_stops_within_one_model_call(tmp_path: Path, tiny_models: Path):
    store = JobStore(tmp_path / "data", [tiny_models], ModelCache(size=1))
    settings = resolve("tiny", {"steps": 4, "preview_every": 0})
    pipe = store.models.get(model_key([tiny_models], settings))  # the job reuses this one

    unet_calls: list[tuple[float, float]] = []
    started: dict[int, float] = {}
    depth_calls: list[float] = []
    in_step_two = threading.Event()

    def unet_pre(*_):
        started[len(unet_calls)] = time.perf_counter()

    def unet_post(*_):
        unet_calls.append((started[len(unet_calls)], time.perf_counter()))

    def depth_pre(*_):
        depth_calls.append(time.perf_counter())
        if len(depth_calls) == 2:  # step 2, window 1: the ControlNet is now running
            in_step_two.set()
            time.sleep(0.05)  # the cancel arrives while this call is still in flight

    handles = [
        pipe.unet.register_forward_pre_hook(unet_pre),
        pipe.unet.register_forward_hook(unet_post),
        pipe.controlnet.nets[0].register_forward_pre_hook(depth_pre),
    ]
    try:
        job_id = store.new_id()
        bundle_dir = write_synthetic_bundle(
            store.job_dir(job_id) / "bundle", frames=FRAMES, size=(64, 64)
        )
        canceller = threading.Thread(
            target=lambda: in_step_two.wait(120) and store.cancel(job_id), daemon=True
        )
        canceller.start()
        store.submit(job_id, load_bundle(bundle_dir), settings)
        deadline = time.time() + 300
        while store.get(job_id).state not in TERMINAL and time.time() < deadline:
            time.sleep(0.02)
        canceller.join(5)
    finally:
        for handle in handles:
            handle.remove()

    job = store.get(job_id)
    assert job.state == "cancelled"
    assert len(unet_calls) == 1, "step 1 ran; step 2's UNet never started"
    events = store.logs[job_id].items
    note = next(e for e in events if e.get("type") == "note" and e.get("cancel"))
    final = events[-1]
    assert final["type"] == "state" and final["state"] == "cancelled"
    after = events[events.index(note) + 1 : -1]
    assert not [e for e in after if e.get("stage") == "denoising"], "no window finished after"
    unet_time = unet_calls[0][1] - unet_calls[0][0]
    latency = final["time"] - note["time"]  # as the job's own events record it (1 ms)
    print(f"UNet call {unet_time * 1000:.0f} ms; cancel to stop {latency * 1000:.0f} ms")
    assert latency < unet_time, "stopped within one model call"
