"""The engine changes the shared, cached pipeline while it renders (attention processors
for looks and references, scaled motion modules; split forwards and offloading where set) and must put
every change back, also when the job stops with an exception in the middle of a window:
the next job on the same cached pipeline must not inherit any of it (#12)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image
from storyshade.cancel import CancelToken
from storyshade.engine.windowed import WindowedAnimateDiffEngine
from storyshade.errors import Cancelled
from storyshade.models.loader import ModelCache, model_key
from storyshade.progress import Reporter
from test_looks_engine import LOOK, Looked, left_half, with_looks
from test_references import IP
from test_windowed import tiny_settings

FRAMES = 6


def pipeline_state(pipe: Any) -> dict[str, Any]:
    """What a job may change on the cached pipeline, as plain comparable values."""
    state: dict[str, Any] = {"scheduler": dict(pipe.scheduler.config)}
    nets = {"unet": pipe.unet, "vae": pipe.vae, "text": pipe.text_encoder}
    nets |= {f"controlnet{i}": n for i, n in enumerate(pipe.controlnet.nets)}
    for name, net in nets.items():
        state[name] = [
            (path, type(m).__name__, sorted(k for k in vars(m) if k in ("forward", "processor")))
            for path, m in net.named_modules()
        ]
        state[f"{name}.devices"] = sorted({str(p.device) for p in net.parameters()})
        state[f"{name}.params"] = sum(p.numel() for p in net.parameters())
        if hasattr(net, "attn_processors"):
            state[f"{name}.processors"] = {
                k: (type(v).__name__, id(v)) for k, v in net.attn_processors.items()
            }
    return state


@pytest.fixture
def reference(tmp_path) -> str:
    path = tmp_path / "reference.png"
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(path)
    return str(path)


def settings_with_everything(reference: str) -> Any:
    return tiny_settings(
        context_length=4,
        context_overlap=2,  # three windows over six frames
        motion_scale=0.5,
        references=[{"image": reference, "weight": 0.7}],
        **IP,
    )


def looked() -> Looked:
    return with_looks(left_half, [LOOK], FRAMES)


def shade(engine: WindowedAnimateDiffEngine, settings, reporter: Reporter, **kw):
    """The engine's frames for the looked shot (a generator, as engine.render)."""
    controls, looks = looked()
    return engine.render(controls, settings, reporter, looks=looks, **kw)


@pytest.mark.slow
def test_a_job_stopped_mid_window_leaves_the_cached_pipeline_as_it_was(tiny_models, reference):
    settings = settings_with_everything(reference)
    cache = ModelCache(size=1)
    pipe = cache.get(model_key([tiny_models], settings))
    before = pipeline_state(pipe)
    cancel = CancelToken()

    def stop_in_window_two(event: dict) -> None:
        if event.get("stage") == "denoising" and event.get("window") == 2:
            cancel.cancel()  # raised at the next check, inside step 1

    engine = WindowedAnimateDiffEngine([tiny_models], cache)
    with pytest.raises(Cancelled):
        list(shade(engine, settings, Reporter(stop_in_window_two), cancel=cancel))
    assert pipeline_state(pipe) == before

    # The next job on this pipeline renders exactly as on a freshly loaded one.
    again = np.stack([f for _, f in shade(engine, settings, Reporter())])
    fresh_engine = WindowedAnimateDiffEngine([tiny_models], ModelCache(size=1))
    fresh = np.stack([f for _, f in shade(fresh_engine, settings, Reporter())])
    assert np.array_equal(again, fresh)
    assert pipeline_state(pipe) == before
