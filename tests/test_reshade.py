"""Re-shading frames A-B of a take: held frames steer, only A-B are made, no seam.

The earlier take's frames outside A-B travel in the bundle as held frames (version 3, a
`take` PNG per frame entry). The windowed engine encodes them once, re-noises them to each
step's level so the windows that reach them continue them, and decodes only A-B.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_synthetic_bundle
from PIL import Image
from storyshade.bundle import load_bundle, parse_shot
from storyshade.errors import BundleError, StoryShadeError
from storyshade.models.loader import ModelCache
from storyshade.models.tiny import TINY_NAMES
from storyshade.render import render_bundle
from storyshade.settings import Settings

FRAMES = 20
A, B = 9, 12  # scene frames (the synthetic shot starts at frame 1)


def settings(**overrides) -> Settings:
    values = {
        "checkpoint": TINY_NAMES["checkpoint"],
        "motion_adapter": TINY_NAMES["motion_adapter"],
        "controls": {"depth": {"model": TINY_NAMES["depth"], "scale": 0.8}},
        "prompt": "a lighthouse at dusk",
        "width": 64,
        "height": 64,
        "steps": 2,
        "guidance_scale": 1.0,
        "context_length": 8,
        "context_overlap": 2,
        "seed": 11,
        "preview_every": 0,
        **overrides,
    }
    return Settings(**values)


def moving_depth(i: int) -> np.ndarray:
    """A ramp that slides one pixel per frame: neighbouring control frames differ a little."""
    x = (np.arange(64, dtype=np.float32) + i) % 64
    return np.tile(3.0 + x / 16.0, (48, 1))


def hold(bundle: Path, take: Path, dest: Path, keep: range) -> Path:
    """`bundle` as a re-shade bundle: frames outside `keep` held from the take's PNGs."""
    shutil.copytree(bundle, dest)
    shot = json.loads((dest / "shot.json").read_text())
    shot["version"] = 3
    (dest / "take").mkdir()
    for entry in shot["frames"]:
        if entry["frame"] not in keep:
            name = f"take/{entry['frame']:04d}.png"
            shutil.copyfile(take / f"{entry['frame']:04d}.png", dest / name)
            entry["take"] = name
    (dest / "shot.json").write_text(json.dumps(shot))
    return dest


def frames_of(folder: Path) -> dict[int, np.ndarray]:
    return {
        int(p.stem): np.asarray(Image.open(p), np.float32) for p in sorted(folder.glob("*.png"))
    }


def step(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


@pytest.fixture(scope="module")
def shot(tmp_path_factory, tiny_models):
    """A 20-frame synthetic shot and its first take (seed 11)."""
    root = tmp_path_factory.mktemp("reshade")
    bundle = write_synthetic_bundle(root / "bundle", FRAMES, depth_fn=moving_depth)
    cache = ModelCache(size=1)
    render_bundle(load_bundle(bundle), settings(), root / "take", [tiny_models], cache)
    return root, bundle, cache


def test_only_the_range_is_made_and_it_joins_its_neighbours(shot, tiny_models, capsys):
    root, bundle, cache = shot
    take = frames_of(root / "take")
    keep = range(A, B + 1)
    held = load_bundle(hold(bundle, root / "take", root / "held", keep))
    assert held.shot.generated_frames == list(keep)
    written = render_bundle(held, settings(seed=12), root / "new", [tiny_models], cache)
    assert [int(p.stem) for p in written] == list(keep)  # held frames are not written
    new = frames_of(root / "new")
    assert any(step(new[f], take[f]) > 1 for f in keep), "a new seed must change the range"

    # Without held frames (the range alone, shaded on its own) for comparison.
    alone = write_synthetic_bundle(
        root / "alone", len(keep), depth_fn=lambda i: moving_depth(i + A - 1), frame_start=A
    )
    render_bundle(load_bundle(alone), settings(seed=12), root / "alone-out", [tiny_models], cache)
    solo = frames_of(root / "alone-out")

    neighbours = [step(take[f], take[f + 1]) for f in range(1, FRAMES)]
    seams = (step(take[A - 1], new[A]), step(new[B], take[B + 1]))
    loose = (step(take[A - 1], solo[A]), step(solo[B], take[B + 1]))
    with capsys.disabled():
        print(
            f"\nre-shade seam (mean abs level, 0-255): held {seams[0]:.2f}/{seams[1]:.2f}, "
            f"range shaded alone {loose[0]:.2f}/{loose[1]:.2f}, take's neighbours "
            f"{min(neighbours):.2f}..{max(neighbours):.2f} (median {np.median(neighbours):.2f})"
        )
    assert max(seams) <= max(neighbours)


def test_held_frames_are_checked(tmp_path, shot):
    root, bundle, _ = shot
    folder = hold(bundle, root / "take", tmp_path / "b", range(A, B + 1))
    shot_json = json.loads((folder / "shot.json").read_text())

    every = json.loads(json.dumps(shot_json))
    for e in every["frames"]:
        e["take"] = f"take/{e['frame']:04d}.png"
    with pytest.raises(BundleError, match="nothing to shade"):
        parse_shot(json.dumps(every))

    old = {**shot_json, "version": 2}
    with pytest.raises(BundleError, match="version 3"):
        parse_shot(json.dumps(old))

    bad_name = json.loads(json.dumps(shot_json))
    bad_name["frames"][0]["take"] = "../0001.png"
    with pytest.raises(BundleError, match=r"\.png path inside the bundle"):
        parse_shot(json.dumps(bad_name))

    (folder / "take" / "0001.png").unlink()
    with pytest.raises(BundleError, match="held frame 1's picture take/0001.png is missing"):
        load_bundle(folder)

    Image.new("RGB", (32, 32)).save(folder / "take" / "0001.png")
    with pytest.raises(BundleError, match="0001.png is 32x32 but shot.json says 64x48"):
        load_bundle(folder).read_take(0)
    (folder / "take" / "0001.png").write_bytes(b"not a png")
    with pytest.raises(BundleError, match="not a readable PNG"):
        load_bundle(folder).read_take(0)


def test_stock_engine_refuses_held_frames(shot, tiny_models, tmp_path):
    root, bundle, cache = shot
    held = load_bundle(hold(bundle, root / "take", tmp_path / "b", range(A, B + 1)))
    with pytest.raises(StoryShadeError, match="cannot re-shade part of a take"):
        render_bundle(
            held,
            settings(engine="animatediff-stock", context_length=16),
            tmp_path / "out",
            [tiny_models],
            cache,
        )


def test_preview_engine_makes_only_the_range(shot, tmp_path):
    root, bundle, _ = shot
    held = load_bundle(hold(bundle, root / "take", tmp_path / "b", range(A, B + 1)))
    written = render_bundle(held, Settings(engine="preview"), tmp_path / "out", [])
    assert [int(p.stem) for p in written] == list(range(A, B + 1))


@pytest.mark.parametrize("scheduler", ["ddim", "euler_a"])
def test_held_frames_enter_every_step_at_its_noise_level(shot, tiny_models, scheduler):
    """The mechanism itself: at every model call the held frames' latents are their clean
    latents noised to that step's level with their own noise, and what is held reaches the
    generated frames (other held content gives other frames)."""
    import torch
    from storyshade.engine.sampling import WindowedSampler
    from storyshade.engine.windowed import encode_text, shot_noise
    from storyshade.models.loader import model_key
    from storyshade.progress import Reporter

    _, _, cache = shot
    s = settings(scheduler=scheduler)
    pipe = cache.get(model_key([tiny_models], s))
    n, keep, shape = 12, [0, 1, 2, 3, 9, 10, 11], (4, 32, 32)
    rng = np.random.default_rng(3)
    controls = [[rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(n)]]
    noise = shot_noise(s, n, shape)

    def run(held: dict[int, torch.Tensor]) -> tuple[torch.Tensor, list[tuple]]:
        sampler = WindowedSampler(pipe, s, Reporter())
        seen: list[tuple] = []
        predict = sampler.predict

        def watch(latents, t, *args, **kwargs):
            seen.append((t, latents[:, :, keep].clone(), sampler.scheduler))
            return predict(latents, t, *args, **kwargs)

        sampler.predict = watch
        with torch.inference_mode():
            out = sampler.denoise(noise, encode_text(pipe, s), controls, [0.8], held)
        return out, seen

    gen = torch.Generator().manual_seed(1)
    clean = {k: torch.randn(shape, generator=gen) for k in keep}
    out, seen = run(clean)
    assert len({float(t) for t, _, _ in seen}) == 2  # every step was watched
    stacked = torch.stack([clean[k] for k in keep], dim=1).unsqueeze(0)
    for t, latents, sched in seen:
        expected = sched.add_noise(stacked, noise[:, :, keep], t[None])
        torch.testing.assert_close(latents, expected)

    other = {k: torch.randn(shape, generator=gen) for k in keep}
    out_other, _ = run(other)
    made = [k for k in range(n) if k not in keep]
    assert not torch.equal(out[:, :, made], out_other[:, :, made])
