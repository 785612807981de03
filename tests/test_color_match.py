"""AdaIN colour matching between windows (issue #14 item 5) on the tiny real models: off
is bit-identical, every window's colour statistics move to the first window's (3+
windows) or to an image's, and engines without windows refuse it by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from storyshade.engine import sampling
from storyshade.engine.color_match import image_stats
from storyshade.engine.windows import static_windows
from storyshade.engines import check_settings
from storyshade.errors import StoryShadeError
from storyshade.models.loader import ModelCache, model_key
from storyshade.presets import resolve
from test_windowed import controls_for, render, tiny_settings

FRAMES = 6
WINDOWS = {"context_length": 2, "context_overlap": 0}  # three windows over six frames


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache(size=1)


@pytest.fixture
def latents(monkeypatch) -> dict:
    """The final latents of the next render (a spy on the decoder's input)."""
    seen: dict = {}
    original = sampling.WindowedSampler.decode

    def spy(self, z, *a, **kw):
        seen["z"] = z.detach().float().cpu().numpy()[0]  # (C, F, h, w)
        return original(self, z, *a, **kw)

    monkeypatch.setattr(sampling.WindowedSampler, "decode", spy)
    return seen


def window_means(z: np.ndarray) -> np.ndarray:
    """(windows, C): each window's per-channel latent mean."""
    wins = static_windows(FRAMES, WINDOWS["context_length"], WINDOWS["context_overlap"])
    return np.stack([z[:, w.start : w.stop].mean(axis=(1, 2, 3)) for w in wins])


def settings(**kw):
    return tiny_settings(**{**WINDOWS, **kw})


@pytest.fixture(scope="module")
def base(tiny_models, cache) -> np.ndarray:
    return render(tiny_models, cache, controls_for(FRAMES), settings())


@pytest.mark.slow
def test_strength_zero_is_bit_identical_to_off(tiny_models, cache, base):
    out = render(tiny_models, cache, controls_for(FRAMES), settings(color_match={"strength": 0}))
    assert np.array_equal(out, base)


@pytest.mark.slow
def test_windows_follow_the_first_window(tiny_models, cache, latents):
    render(tiny_models, cache, controls_for(FRAMES), settings())
    off = window_means(latents["z"])
    render(tiny_models, cache, controls_for(FRAMES), settings(color_match={"strength": 1}))
    on = window_means(latents["z"])
    spread_off, spread_on = off.std(axis=0).mean(), on.std(axis=0).mean()
    print(f"\n[figures] per-window latent mean spread: off {spread_off:.4f}, on {spread_on:.4f}")
    assert spread_on < 0.5 * spread_off


@pytest.mark.slow
def test_an_image_sets_the_palette(tiny_models, cache, latents, tmp_path):
    """A frame as the reference (another shot's, say) pulls every window's latent
    statistics to the frame's own, VAE-encoded at the generation size."""
    path = tmp_path / "red.png"
    Image.fromarray(np.full((40, 60, 3), (220, 30, 20), np.uint8)).save(path)
    s = settings(color_match={"strength": 1, "image": str(path)})
    pipe = cache.get(model_key([tiny_models], s))
    with torch.inference_mode():
        target = image_stats(pipe, str(path), s.width, s.height)[0].flatten().numpy()
    render(tiny_models, cache, controls_for(FRAMES), settings())
    off = np.abs(window_means(latents["z"]) - target).mean()
    render(tiny_models, cache, controls_for(FRAMES), s)
    on = np.abs(window_means(latents["z"]) - target).mean()
    print(f"\n[figures] window means' distance to the frame's: off {off:.4f}, on {on:.4f}")
    assert on < 0.5 * off


def test_engines_without_windows_refuse_it(tmp_path):
    check_settings(settings())
    check_settings(settings(color_match={}))
    for engine in ("animatediff-stock", "preview"):
        with pytest.raises(StoryShadeError) as err:
            check_settings(settings(engine=engine, color_match={}))
        assert err.value.field == "settings.color_match"
    with pytest.raises(StoryShadeError, match="color_match"):
        resolve("tiny,preview", {"color_match": {}})


def test_a_bad_reference_frame_names_the_field(tiny_models, cache, tmp_path: Path):
    bad = tmp_path / "frame.png"
    bad.write_text("not an image")
    with pytest.raises(StoryShadeError) as err:
        render(
            tiny_models,
            cache,
            controls_for(2),
            settings(color_match={"image": str(bad)}, steps=1),
        )
    assert err.value.field == "settings.color_match.image"
    assert "frame.png" in err.value.problem


def test_cli_color_match(tiny_models, tmp_path, capsys):
    from conftest import write_synthetic_bundle
    from storyshade.cli import main as cli_main

    bundle = write_synthetic_bundle(tmp_path / "bundle", frames=2)
    frame = tmp_path / "frame.png"
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(frame)
    argv = ["render", str(bundle), "--preset", "tiny", "--models", str(tiny_models)]
    out = tmp_path / "out"
    assert cli_main([*argv, "--out", str(out), "--steps", "1", "--color-match", f"1:{frame}"]) == 0
    assert len(list(out.glob("*.png"))) == 2
    assert cli_main([*argv, "--out", str(out), "--color-match", "0.5:missing.png"]) == 2
    assert "settings.color_match.image" in capsys.readouterr().err
    assert cli_main([*argv, "--out", str(out), "--color-match", "strong"]) == 2
