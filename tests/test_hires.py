"""The hires pass (settings.hires): a second, partly re-noised pass at a larger size on the
tiny models, through the engine and the real render path; bad values refused early."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_synthetic_bundle
from storyshade.bundle import load_bundle
from storyshade.engine.windowed import WindowedAnimateDiffEngine
from storyshade.errors import StoryShadeError
from storyshade.models.loader import ModelCache
from storyshade.progress import Reporter
from storyshade.render import render_bundle
from storyshade.settings import Settings, hires_size
from test_windowed import controls_for, tiny_settings


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache(size=1)


def run(models, cache, settings, frames: int = 6) -> tuple[np.ndarray, list[dict]]:
    events: list[dict] = []
    engine = WindowedAnimateDiffEngine([models], cache)
    out = list(engine.render(controls_for(frames), settings, Reporter(events.append)))
    assert [i for i, _ in out] == list(range(frames))
    return np.stack([f for _, f in out]), events


def test_second_pass_refines_at_the_larger_size(tiny_models, cache) -> None:
    base = tiny_settings(steps=2, context_length=4, context_overlap=2)
    one, _ = run(tiny_models, cache, base)
    hires = Settings.model_validate({**base.model_dump(), "hires": {"scale": 1.5}})
    two, events = run(tiny_models, cache, hires)
    assert one.shape[1:3] == (64, 64) and two.shape[1:3] == (96, 96)
    refining = [e for e in events if e.get("stage") == "refining"]
    # strength 0.5 of 2 steps: the last step again, over both windows of the 6 frames
    assert {e["steps"] for e in refining} == {1} and refining[-1]["done"] == 2
    assert refining[-1]["total"] == 2
    small = np.stack([np.asarray(resize_to(f, 64)) for f in two])
    assert np.abs(small.astype(int) - one.astype(int)).mean() > 1, "the second pass acts"

    stronger = Settings.model_validate({**hires.model_dump(), "hires": {"strength": 1.0}})
    three, events = run(tiny_models, cache, stronger)
    assert {e["steps"] for e in events if e.get("stage") == "refining"} == {2}
    assert not np.array_equal(two, three)


def resize_to(frame: np.ndarray, side: int) -> np.ndarray:
    from storyshade.controls.sizing import resize

    return resize(frame, side, side)


def test_frames_land_at_the_scene_size_and_held_frames_stay(tiny_models, cache, tmp_path):
    bundle = write_synthetic_bundle(tmp_path / "b", frames=5)  # 64x48 scene
    settings = tiny_settings(steps=2, context_length=4, context_overlap=2)
    settings = Settings.model_validate({**settings.model_dump(), "hires": {"scale": 2.0}})
    written = render_bundle(load_bundle(bundle), settings, tmp_path / "out", [tiny_models], cache)
    from PIL import Image

    assert [Image.open(p).size for p in written] == [(64, 48)] * 5


def test_bad_hires_settings_are_refused_naming_the_field(tiny_models) -> None:
    from storyshade.server.submit import resolve_settings

    with pytest.raises(ValueError, match="greater than 1"):
        Settings(hires={"scale": 1.0})
    with pytest.raises(ValueError, match="less than or equal to 1"):
        Settings(hires={"strength": 1.5})
    assert hires_size(512, 288, 1.5) == (768, 432)
    with pytest.raises(StoryShadeError) as err:
        resolve_settings(
            '{"preset": "tiny", "width": 512, "height": 512, "hires": {"scale": 2.0}}',
            [tiny_models],
            768,
        )
    assert err.value.field == "settings.hires.scale" and "1024x1024" in str(err.value)
    stock = Settings(engine="animatediff-stock", hires={"scale": 1.5})
    from storyshade.engines import Shot, check_job

    with pytest.raises(StoryShadeError, match="cannot run a hires pass") as err:
        check_job(stock, [tiny_models], Shot(4))
    assert err.value.field == "settings.hires"


def test_looks_act_in_the_second_pass_at_its_layer_sizes(tiny_models, cache) -> None:
    """The looks' masks are made again at the hires pass's sizes: a look never visible
    changes nothing there either, and a visible one changes the frames."""
    from test_looks_engine import CRATE, LOOK, WINDOWS, left_half, nowhere, with_looks
    from test_windowed import render

    settings = Settings.model_validate({**tiny_settings(**WINDOWS).model_dump(), "hires": {}})
    plain = render(tiny_models, cache, controls_for(6), settings)
    unseen = render(tiny_models, cache, with_looks(nowhere, [LOOK]), settings)
    assert plain.shape[1:3] == (96, 96) and np.array_equal(unseen, plain)
    seen = render(tiny_models, cache, with_looks(left_half, [LOOK, CRATE]), settings)
    assert not np.array_equal(seen, plain)
