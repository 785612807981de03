"""Prompt texts as the model reads them, on the tiny real models: a look's text is its
prompt inside the shot's style (a style with a prefix AND a suffix), and a text longer than
CLIP's 75 tokens is read whole, in chunks, on every path (shot, looks, negatives,
references); a text that fits is encoded bit for bit as diffusers does."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from storyshade.bundle import Region
from storyshade.engine.animatediff import StockAnimateDiffEngine
from storyshade.engine.regions import encode_looks, look_texts
from storyshade.engine.text import encode_pair, split_chunks, text_chunks
from storyshade.engine.windowed import encode_text
from storyshade.models.loader import ModelCache, model_key
from storyshade.models.tiny import TINY_NAMES
from storyshade.presets import resolve
from storyshade.progress import Reporter
from test_looks_engine import FRAMES, WINDOWS, everywhere, with_looks
from test_windowed import controls_for, render, tiny_settings

PREFIX, SUFFIX = "ink wash painting", "soft morning light"
# The tiny tokenizer reads one token per character (spaces apart): this is 150 tokens, which
# make three chunks when cut at commas.
LONG = (
    "a lighthouse on a cliff, waves below, gulls in the wind, a red tin door, a path of stones,"
    " a fence, grass and flowers, a small boat near the rocks, clouds above the sea,"
    " under a pale moon"
)
LONG_OTHER = LONG.replace("under a pale moon", "in a burning sun")


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache(size=2)


@pytest.fixture(scope="module")
def pipe(tiny_models, cache):
    return cache.get(model_key([tiny_models], tiny_settings()))


@pytest.fixture
def styled(tmp_path, monkeypatch) -> str:
    """A user style preset with a prefix, a suffix and a negative; its name."""
    style = tmp_path / "presets" / "style"
    style.mkdir(parents=True)
    (style / "inkwash.toml").write_text(
        f'description = "ink wash"\n[settings]\nprompt_prefix = "{PREFIX}"\n'
        f'prompt_suffix = "{SUFFIX}"\nnegative_prompt = "blurry"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("STORYSHADE_PRESETS", str(tmp_path / "presets"))
    return "inkwash"


def style_settings(style: str, **overrides):
    """Settings as a user gets them: the style preset and the tiny quality, resolved."""
    return resolve(f"{style},tiny", {"width": 64, "height": 64, **WINDOWS, **overrides})


# -- chunking -------------------------------------------------------------------------------


def test_chunks_are_at_most_75_tokens_and_cut_after_a_comma():
    comma = 0
    ids = [1] * 70 + [comma] + [2] * 10  # 81 tokens, a comma at 70 (within 20 of the end)
    assert split_chunks(ids, 75, comma) == [[1] * 70 + [comma], [2] * 10]
    far = [comma] + [1] * 80  # no comma in the last 20 of the window: cut at 75
    assert split_chunks(far, 75, comma) == [far[:75], far[75:]]
    assert split_chunks([], 75, comma) == [[]]  # the empty text is one (empty) chunk
    assert [len(c) for c in split_chunks([3] * 160, 75, comma)] == [75, 75, 10]


def test_a_text_that_fits_is_encoded_exactly_as_diffusers_does(pipe):
    with torch.inference_mode():
        for text, negative in (("a lighthouse at dusk", "blurry"), ("", None), ("x" * 75, "")):
            ours = encode_pair(pipe, text, negative, True)
            stock = pipe.encode_prompt(text, pipe.unet.device, 1, True, negative)
            assert ours[0].shape == (1, 77, 32)
            assert torch.equal(ours[0], stock[0]) and torch.equal(ours[1], stock[1])


def test_a_long_text_is_each_chunk_encoded_on_its_own(pipe):
    chunks, tokens = text_chunks(pipe, LONG)
    comma = pipe.tokenizer.convert_tokens_to_ids(",</w>")
    assert tokens == 150 and len(chunks) == 3 and sum(map(len, chunks)) == 150
    assert all(len(c) <= 75 for c in chunks) and chunks[0][-1] == chunks[1][-1] == comma
    events: list[dict] = []
    with torch.inference_mode():
        positive, negative = encode_pair(pipe, LONG, "blurry", True, Reporter(events.append))
        words = [pipe.tokenizer.decode(c) for c in chunks]
        for k, text in enumerate(words):  # chunk k is that part of the text, encoded alone
            alone = pipe.encode_prompt(text, pipe.unet.device, 1, False)[0]
            assert torch.equal(positive[:, 77 * k : 77 * (k + 1)], alone)
        empty = pipe.encode_prompt("", pipe.unet.device, 1, False)[0]
        blurry = pipe.encode_prompt("blurry", pipe.unet.device, 1, False)[0]
    # CFG: the negative is as long as the positive, padded with the encoded empty text
    assert positive.shape == negative.shape == (1, 3 * 77, 32)
    assert torch.equal(negative[:, :77], blurry)
    assert torch.equal(negative[:, 77:154], empty) and torch.equal(negative[:, 154:], empty)
    notes = [e for e in events if e.get("event") == "prompt_chunks"]
    assert [(n["text"], n["tokens"], n["chunks"]) for n in notes] == [("the prompt", 150, 3)]


def test_a_long_negative_pads_the_prompt(pipe):
    with torch.inference_mode():
        positive, negative = encode_pair(pipe, "a cat", "blurry, " * 30, True)  # 210 tokens
        empty = pipe.encode_prompt("", pipe.unet.device, 1, False)[0]
    assert positive.shape == negative.shape == (1, 231, 32)
    assert torch.equal(positive[:, 77:154], empty) and torch.equal(positive[:, 154:], empty)


def test_the_last_words_of_a_long_prompt_change_the_frames(tiny_models, cache):
    events: list[dict] = []
    controls = controls_for(FRAMES)
    first = render(
        tiny_models,
        cache,
        controls,
        tiny_settings(prompt=LONG, **WINDOWS),
        reporter=Reporter(events.append),
    )
    other = render(tiny_models, cache, controls, tiny_settings(prompt=LONG_OTHER, **WINDOWS))
    diff = np.abs(first.astype(int) - other.astype(int))
    print(f"\n[figures] last words of a 150-token prompt changed: max diff {diff.max()} levels")
    assert diff.max() > 1
    assert any(e.get("event") == "prompt_chunks" and e["chunks"] == 3 for e in events)


def test_the_stock_engine_says_it_cuts_a_long_prompt(tiny_models, cache):
    events: list[dict] = []
    engine = StockAnimateDiffEngine([tiny_models], cache)
    settings = tiny_settings(engine="animatediff-stock", prompt=LONG, steps=1)
    list(engine.render(controls_for(2), settings, Reporter(events.append)))
    (note,) = [e for e in events if e.get("event") == "prompt_truncated"]
    assert note["text"] == "the prompt" and note["dropped"] == 75
    assert "engine 'animatediff' reads it whole" in note["message"]


def test_references_take_a_long_prompt(tiny_models, cache, tmp_path):
    """The reference images' processor attends to a text of any length too."""
    image = tmp_path / "ref.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(image)
    common = {
        **WINDOWS,
        "ip_adapter": TINY_NAMES["ip_adapter"],
        "image_encoder": TINY_NAMES["image_encoder"],
        "references": [{"image": str(image), "weight": 1.0}],
    }
    controls = controls_for(4)
    first = render(tiny_models, cache, controls, tiny_settings(prompt=LONG, **common))
    other = render(tiny_models, cache, controls, tiny_settings(prompt=LONG_OTHER, **common))
    assert np.abs(first.astype(int) - other.astype(int)).max() > 1


# -- looks inside the style -----------------------------------------------------------------


def test_a_looks_text_is_its_prompt_inside_the_style(styled, pipe):
    settings = style_settings(styled, prompt="an empty street")
    assert (settings.prompt, settings.prompt_prefix, settings.prompt_suffix) == (
        "an empty street",
        PREFIX,
        SUFFIX,
    )
    look = Region(id=1, name="Girl", prompt="a girl in a red coat", negative="hat")
    text, negative = look_texts(settings, look)
    assert text == f"{PREFIX}, a girl in a red coat, {SUFFIX}"
    assert negative == "blurry, hat"  # the shot's negative (the style's), then the look's
    assert look_texts(settings, look.model_copy(update={"negative": ""}))[1] == "blurry"
    as_shot = settings.model_copy(update={"prompt": look.prompt, "negative_prompt": negative})
    assert as_shot.full_prompt == text  # one rule builds both
    events: list[dict] = []
    long = Region(id=2, name="Sea", prompt=LONG)
    with torch.inference_mode():
        cond, uncond = encode_looks(pipe, settings, [look, long], Reporter(events.append))
        shot = encode_text(pipe, as_shot)  # [negative, positive]
    assert torch.equal(cond[0], shot[1:]) and torch.equal(uncond[0], shot[:1])
    # looks' texts may differ in length; a look's prompt and negative have the same
    assert cond[1].shape == uncond[1].shape and cond[1].shape[1] > cond[0].shape[1]
    notes = [(e["text"], e["chunks"]) for e in events if e.get("event") == "prompt_chunks"]
    assert notes == [("the prompt of look 'Sea'", 3)]


def test_an_accepted_job_with_the_longest_prompt_survives_a_restart(tmp_path, tiny_models):
    """Through a real server: the job's stored settings are what was validated at submit
    (the user's prompt, the style's prefix beside it), so a restart reads it back."""
    import httpx
    from serverproc import ServerProcess
    from test_server_helpers import bundle_zip, submit, wait_state

    data_dir = tmp_path / "data"
    data = bundle_zip(tmp_path / "b")
    server = ServerProcess(data_dir, tiny_models).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            job = submit(c, data, {"engine": "preview", "prompt": "p" * 2000})
            assert wait_state(c, job["id"])["state"] == "done"
    finally:
        server.stop()
    again = ServerProcess(data_dir, tiny_models).start()
    try:
        with httpx.Client(base_url=again.url, timeout=60) as c:
            got = c.get(f"/v1/jobs/{job['id']}")
            assert got.status_code == 200, got.text
            assert got.json()["state"] == "done"
    finally:
        again.stop()
    (stored,) = data_dir.glob(f"**/{job['id']}/settings.json")
    settings = json.loads(stored.read_text(encoding="utf-8"))
    assert settings["prompt"] == "p" * 2000 and settings["prompt_prefix"]


def test_a_stored_prompt_stays_within_its_limits():
    """What is validated at submit is what a job stores: the style is not folded into a
    prompt that may then be over its 2000 characters when the record is read back."""
    settings = resolve(None, {"prompt": "p" * 2000})  # the default style has a prefix
    assert settings.prompt_prefix and settings.full_prompt.endswith("p" * 2000)
    again = type(settings).model_validate(settings.model_dump(mode="json"))
    assert again == settings


@pytest.mark.slow
def test_a_look_over_every_pixel_equals_that_prompt_in_the_style(styled, tiny_models, cache):
    """With a style that has a prefix and a suffix, a look's prompt long enough to need two
    chunks, and a negative of its own."""
    look = {"id": 1, "name": "Lighthouse", "prompt": LONG, "negative": "hat"}
    looked = render(
        tiny_models,
        cache,
        with_looks(everywhere, [look]),
        style_settings(styled, prompt="an empty street"),
    )
    plain = render(
        tiny_models,
        cache,
        controls_for(FRAMES),
        style_settings(styled, prompt=LONG, negative_prompt="blurry, hat"),
    )
    diff = np.abs(looked.astype(int) - plain.astype(int))
    print(f"\n[figures] look over every pixel in a style vs shot prompt: max diff {diff.max()}")
    assert diff.max() <= 1
    bare = render(
        tiny_models,
        cache,
        controls_for(FRAMES),
        style_settings(styled, prompt=LONG, prompt_prefix="", prompt_suffix=""),
    )
    assert np.abs(looked.astype(int) - bare.astype(int)).max() > 1  # the style acts
