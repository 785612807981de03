"""Reference images (IP-Adapter) on the tiny real models: discovery and compatibility
checks name both files, weight 0 is bit-identical to no reference, a reference reaches
every window, composes with per-object looks, and bad images are clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from storyshade.cli import main as cli_main
from storyshade.engine.cross_attention import CrossAttention
from storyshade.engine.references import ReferenceLayer
from storyshade.engines import check_settings
from storyshade.errors import ModelError, StoryShadeError
from storyshade.models.check import check_preset
from storyshade.models.discover import discover
from storyshade.models.ip_adapter import ip_adapter_arch, problems
from storyshade.models.loader import ModelCache, model_key
from storyshade.models.tiny import (
    TINY_NAMES,
    cross_attention_widths,
    tiny_image_encoder,
    tiny_unet,
    write_ip_adapter,
)
from storyshade.presets import resolve
from storyshade.references import load_image
from storyshade.settings import Settings
from storyshade.wire.references import parse_reference_arg
from test_looks_engine import LOOK, Looked, left_half, with_looks
from test_windowed import controls_for, render, tiny_settings

FRAMES = 4
# three windows over four frames: the least work that still has 3+ windows
WINDOWS = {"context_length": 2, "context_overlap": 1}
IP = {"ip_adapter": TINY_NAMES["ip_adapter"], "image_encoder": TINY_NAMES["image_encoder"]}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("refs")
    rng = np.random.default_rng(0)
    out = {
        "noise": root / "noise.png",
        "flat": root / "flat.jpg",
    }
    Image.fromarray(rng.integers(0, 256, (90, 60, 3), dtype=np.uint8)).save(out["noise"])
    Image.fromarray(np.full((40, 70, 3), (200, 40, 30), np.uint8)).save(out["flat"])
    return out


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache(size=1)


def ref(path: Path, weight: float = 1.0) -> list[dict]:
    return [{"image": str(path), "weight": weight}]


def settings(**kw) -> Settings:
    return tiny_settings(**{**WINDOWS, **IP, **kw})


def looked() -> Looked:
    return with_looks(left_half, [LOOK], FRAMES)


# -- models ---------------------------------------------------------------------------------


def test_tiny_set_has_ip_adapters_and_an_image_encoder(tiny_models):
    kinds = {(f.kind, f.name) for f in discover([tiny_models], hf_cache=False)}
    assert ("ip_adapter", TINY_NAMES["ip_adapter"]) in kinds
    assert ("ip_adapter", TINY_NAMES["ip_adapter_plus"]) in kinds
    assert ("image_encoder", TINY_NAMES["image_encoder"]) in kinds
    base = ip_adapter_arch(tiny_models / "ip_adapter" / "tiny-ip-adapter.safetensors")
    plus = ip_adapter_arch(tiny_models / "ip_adapter" / "tiny-ip-adapter-plus.safetensors")
    assert (base.variant, base.tokens, plus.variant) == ("base", 4, "plus")
    for f in (base.path, plus.path):
        assert f.stat().st_size < 1 << 20  # tiny: loads in milliseconds


def test_models_check_knows_references(tiny_models, images, capsys):
    s = resolve("tiny", {"references": ref(images["noise"])})
    report = check_preset([tiny_models], s)
    assert report.ok, report.text()
    assert {"ip adapter", "image encoder"} <= {n.role for n in report.needs}
    rc = cli_main(
        [
            "models",
            "check",
            "tiny",
            "--models",
            str(tiny_models),
            "--reference",
            str(images["noise"]),
        ]
    )
    assert rc == 0
    assert "tiny-image-encoder" in capsys.readouterr().out


def _root_with(tiny_models: Path, tmp: Path) -> Path:
    root = tmp / "models"
    root.mkdir()
    for folder in tiny_models.iterdir():
        if folder.name not in ("ip_adapter", "image_encoder"):
            (root / folder.name).symlink_to(folder)
    return root


def test_sdxl_adapter_on_sd15_names_both_files(tiny_models, tmp_path):
    root = _root_with(tiny_models, tmp_path)
    widths = cross_attention_widths(tiny_unet())
    adapter = write_ip_adapter(root / "ip_adapter" / "xl.safetensors", widths, cross=2048)
    tiny_image_encoder().save_pretrained(root / "image_encoder" / "enc")
    s = tiny_settings(ip_adapter="xl", image_encoder="enc", references=[{"image": "x.png"}])
    with pytest.raises(ModelError) as err:
        model_key([root], s)
    msg = err.value.message
    assert str(adapter) in msg and "tiny-sd15" in msg and "SDXL" in msg
    assert err.value.field == "settings.ip_adapter"


def test_plus_adapter_with_the_wrong_encoder_names_both_files(tiny_models, tmp_path):
    root = _root_with(tiny_models, tmp_path)
    widths = cross_attention_widths(tiny_unet())
    write_ip_adapter(root / "ip_adapter" / "plus.safetensors", widths, embed=32, plus=True)
    wrong = root / "image_encoder" / "wide"
    tiny_image_encoder(hidden=40).save_pretrained(wrong)
    found = problems(root / "ip_adapter" / "plus.safetensors", wrong, tiny_models, 32)
    assert len(found) == 1
    msg = found[0].message
    assert "plus.safetensors" in msg and str(wrong) in msg and "hidden_size" in msg
    assert found[0].field == "settings.image_encoder"
    # a base adapter reads the projection instead: the same encoder fits a 24-wide one
    write_ip_adapter(root / "ip_adapter" / "base.safetensors", widths, embed=24)
    assert problems(root / "ip_adapter" / "base.safetensors", wrong, tiny_models, 32) == []


def test_adapter_with_other_layers_is_refused(tiny_models, tmp_path):
    root = _root_with(tiny_models, tmp_path)
    write_ip_adapter(root / "ip_adapter" / "short.safetensors", [32, 32], embed=24)
    found = problems(
        root / "ip_adapter" / "short.safetensors",
        tiny_models / "image_encoder" / TINY_NAMES["image_encoder"],
        tiny_models / "checkpoints" / TINY_NAMES["checkpoint"],
        32,
    )
    assert found and "2 cross-attention layers" in found[0].message


# -- the engine -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(tiny_models, cache) -> np.ndarray:
    return render(tiny_models, cache, controls_for(FRAMES), settings())


def test_weight_zero_is_bit_identical_to_no_reference(tiny_models, cache, base, images):
    out = render(
        tiny_models, cache, controls_for(FRAMES), settings(references=ref(images["noise"], 0.0))
    )
    assert np.array_equal(out, base)


def test_a_reference_reaches_every_window(tiny_models, cache, base, images, monkeypatch):
    calls: list[int] = []
    original = ReferenceLayer.add

    def spy(self, attn, query, *a, **kw):
        calls.append(query.shape[0])
        return original(self, attn, query, *a, **kw)

    monkeypatch.setattr(ReferenceLayer, "add", spy)
    a = render(tiny_models, cache, controls_for(FRAMES), settings(references=ref(images["noise"])))
    b = render(tiny_models, cache, controls_for(FRAMES), settings(references=ref(images["flat"])))
    windows, steps, layers = 3, 2, 4
    # one UNet call per window per step, CFG batched: 2 branches x 2 frames in each
    assert calls == [2 * 2] * (2 * windows * steps * layers)
    per_frame_ref = np.abs(a.astype(int) - base).reshape(FRAMES, -1).max(axis=1)
    per_frame_image = np.abs(a.astype(int) - b).reshape(FRAMES, -1).max(axis=1)
    print(
        f"\n[figures] reference vs none per frame {per_frame_ref}; image A vs B {per_frame_image}"
    )
    assert (per_frame_ref > 1).all()  # every frame, so every window
    assert (per_frame_image > 1).all()


def test_a_prompt_only_job_reuses_embeddings_and_controls(tiny_models, cache, images, tmp_path):
    """Through the render path with a stage cache, as the server runs jobs: the first job
    encodes its image once (two references to it), the second, with another prompt, encodes
    nothing and builds no controls; the job's note events say so."""
    from conftest import write_synthetic_bundle
    from storyshade.bundle import load_bundle
    from storyshade.cache import StageCache
    from storyshade.progress import Reporter
    from storyshade.render import render_bundle

    bundle = load_bundle(write_synthetic_bundle(tmp_path / "bundle", frames=2))
    stages = StageCache(tmp_path / "stages")
    twice = [{"image": str(images["noise"])}, {"image": str(images["noise"]), "weight": 0.3}]

    def job(prompt: str) -> list[tuple[str, str]]:
        events: list[dict] = []
        s = settings(references=twice, prompt=prompt, steps=1)
        render_bundle(
            bundle, s, tmp_path / prompt, [tiny_models], cache, Reporter(events.append), stages
        )
        return [(e["stage"], e["cache"]) for e in events if e["type"] == "note" and "cache" in e]

    assert job("a lighthouse") == [("references", "miss")]
    assert job("a red barn") == [("controls", "hit"), ("references", "hit")]


def test_plus_adapter_and_two_references(tiny_models, cache, base, images):
    two = [{"image": str(images["noise"]), "weight": 0.5}, {"image": str(images["flat"])}]
    out = render(
        tiny_models,
        cache,
        controls_for(FRAMES),
        settings(references=two, ip_adapter=TINY_NAMES["ip_adapter_plus"]),
    )
    assert np.abs(out.astype(int) - base).max() > 1


def test_references_compose_with_looks(tiny_models, cache, images):
    """(Weight 0 installs no processor at all, with or without looks: nothing to render.)"""
    plain = render(tiny_models, cache, looked(), settings())
    withref = render(tiny_models, cache, looked(), settings(references=ref(images["noise"])))
    diff = np.abs(withref.astype(int) - plain)
    # both halves change: inside the look (regional processor + residual) and outside it
    assert diff[:, :, :32].max() > 1 and diff[:, :, 32:].max() > 1
    # the shared pipeline got its processors back
    pipe = cache.get(model_key([tiny_models], settings()))
    assert not any(isinstance(p, CrossAttention) for p in pipe.unet.attn_processors.values())


def test_the_stock_engine_refuses_references():
    refs = [{"image": "a.png"}]
    with pytest.raises(StoryShadeError, match="reference") as err:
        check_settings(Settings(engine="animatediff-stock", references=refs))
    assert err.value.field == "settings.references"
    check_settings(Settings(engine="animatediff", references=refs))


# -- settings, CLI, bad input ---------------------------------------------------------------


def test_settings_limits():
    with pytest.raises(ValueError):
        Settings(references=[{"image": "a.png"}] * 5)
    with pytest.raises(ValueError):
        Settings(references=[{"image": "a.png", "weight": 2.5}])
    assert Settings(references=[{"image": "a.png"}]).references[0].weight == 0.8


def test_reference_argument(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_reference_arg("girl.png:0.5") == {
        "image": str(tmp_path / "girl.png"),
        "weight": 0.5,
    }
    assert parse_reference_arg("girl.png") == {"image": str(tmp_path / "girl.png")}
    assert parse_reference_arg("C:girl.png")["image"].endswith("C:girl.png")
    assert parse_reference_arg("girl.png:0.5@Girl") == {
        "image": str(tmp_path / "girl.png"),
        "weight": 0.5,
        "look": "Girl",
    }


def style_preset(root: Path, image: Path, name: str, settings_line: str) -> Path:
    """A user style preset `name` under `root` with a copy of `image` beside it."""
    style = root / "style"
    style.mkdir()
    (style / image.name).write_bytes(image.read_bytes())
    (style / f"{name}.toml").write_text(
        f'description = "{name}"\n[settings]\n{settings_line}\n', encoding="utf-8"
    )
    return style


def test_a_preset_names_references_beside_it(tmp_path, monkeypatch, images):
    line = f'references = [{{ image = "{images["noise"].name}", weight = 0.6 }}]'
    style = style_preset(tmp_path, images["noise"], "redstyle", line)
    monkeypatch.setenv("STORYSHADE_PRESETS", str(tmp_path))
    s = resolve("redstyle,tiny")
    assert s.references[0].image == str(style / images["noise"].name)
    assert s.references[0].weight == 0.6
    assert s.ip_adapter == TINY_NAMES["ip_adapter"]


def test_a_style_preset_sets_colour_matching_to_a_frame_beside_it(tmp_path, monkeypatch, images):
    key = images["noise"]
    line = f'color_match = {{ strength = 0.7, image = "{key.name}" }}'
    style = style_preset(tmp_path, key, "keyed", line)
    monkeypatch.setenv("STORYSHADE_PRESETS", str(tmp_path))
    s = resolve("keyed,tiny")
    assert (s.color_match.strength, s.color_match.image) == (0.7, str(style / key.name))
    # tables merge key by key, as every layer does: a request's strength keeps the frame,
    # and "image": null goes back to matching the shot's first window
    assert resolve("keyed,tiny", {"color_match": {"strength": 0.2}}).color_match.image == str(
        style / key.name
    )
    assert resolve("keyed,tiny", {"color_match": {"image": None}}).color_match.image is None


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: None, "not found"),
        (lambda p: p.write_text("not an image"), "not a supported image"),
        (lambda p: Image.new("RGB", (8, 8)).save(p, format="GIF"), "not a supported image"),
        (lambda p: p.write_bytes(_png(16, 16)[:60]), "cannot be decoded"),
        (lambda p: Image.new("1", (9000, 9000)).save(p, format="PNG"), "over the limit"),
    ],
    ids=["missing", "text", "gif", "truncated", "huge"],
)
def test_bad_images_are_clear_errors(tmp_path, make, words):
    path = tmp_path / "ref.png"
    make(path)
    with pytest.raises(StoryShadeError) as err:
        load_image(path, 2)
    assert words in err.value.problem and str(path) in err.value.problem
    assert err.value.field == "settings.references.2.image"
    assert err.value.status == 422


def _png(w: int, h: int) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
        buf, format="PNG"
    )
    return buf.getvalue()


def test_cli_render_with_a_reference(tiny_models, tmp_path, images, capsys):
    from conftest import write_synthetic_bundle

    bundle = write_synthetic_bundle(tmp_path / "bundle", frames=2)
    out = tmp_path / "out"
    argv = [
        "render",
        str(bundle),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--models",
        str(tiny_models),
    ]
    assert cli_main([*argv, "--reference", f"{images['flat']}:0.8", "--steps", "1"]) == 0
    assert len(list(out.glob("*.png"))) == 2
    rc = cli_main([*argv, "--reference", str(tmp_path / "missing.png")])
    assert rc == 2
    assert "missing.png" in capsys.readouterr().err


def test_server_json_reference_paths_stay_inside_the_bundle():
    from storyshade.server.submit import check_request_references

    check_request_references({"references": [{"image": "references/girl.png"}]})
    for bad in ("/etc/passwd", "../x.png", "a/../../b.png"):
        with pytest.raises(StoryShadeError) as err:
            check_request_references({"references": [{"image": bad}]})
        assert err.value.field == "settings.references.0.image"


def test_server_takes_references_from_the_bundle_zip(server, tmp_path, images):
    import httpx
    from conftest import write_synthetic_bundle
    from test_server_helpers import post_job, zip_dir

    bundle = write_synthetic_bundle(tmp_path / "bundle", frames=2)
    (bundle / "references").mkdir()
    (bundle / "references" / "flat.jpg").write_bytes(images["flat"].read_bytes())
    (bundle / "references" / "notes.png").write_text("not an image")
    data = zip_dir(bundle)

    def refs(image: str, **kw) -> dict:
        return {"preset": "tiny", "steps": 1, "references": [{"image": image}], **kw}

    with httpx.Client(base_url=server.url, timeout=60) as client:
        cases = [
            (refs("references/missing.png"), 422, "not in the uploaded bundle"),
            (refs("references/notes.png"), 422, "not a supported image"),
            (refs("/etc/hostname"), 400, "not a path inside the bundle"),
            (refs("references/flat.jpg", engine="animatediff-stock"), 400, "reference"),
            # the colour-match frame travels the same way (docs/references.md)
            (refs("references/flat.jpg", color_match={"image": "x.png"}), 422, "not in the"),
            (refs("references/flat.jpg", color_match={"image": "/etc/x"}), 400, "not a path"),
            ({"preset": "tiny", "engine": "preview", "color_match": {}}, 400, "match colours"),
        ]
        for settings, status, words in cases:
            r = post_job(client, data, settings)
            assert r.status_code == status, r.text
            body = r.json()
            assert words in body["error"], body
            assert body["field"].startswith("settings.")
        r = post_job(client, data, refs("references/flat.jpg"))
        assert r.status_code < 300, r.text
        job = server.wait_job(r.json()["id"])
        assert job["state"] == "done", job


# -- references on looks (character references) --------------------------------------------


def _looked(ids_fn) -> Looked:
    return with_looks(ids_fn, [LOOK], FRAMES)


def _on_look(path: Path, look: str | None = "Lighthouse") -> list[dict]:
    return [{"image": str(path), "weight": 1.0, "look": look}]


def test_a_reference_on_a_look_never_visible_changes_nothing(tiny_models, cache, base, images):
    """(A look never visible changes nothing itself, bit for bit: tests/test_looks_engine.py;
    so the frames must be those of the shot without looks.)"""
    from test_looks_engine import nowhere

    out = render(
        tiny_models, cache, _looked(nowhere), settings(references=_on_look(images["noise"]))
    )
    assert np.array_equal(base, out)


def test_a_reference_on_a_look_over_every_pixel_equals_it_globally(tiny_models, cache, images):
    from test_looks_engine import everywhere

    on_look = render(
        tiny_models, cache, _looked(everywhere), settings(references=_on_look(images["noise"]))
    )
    globally = render(
        tiny_models,
        cache,
        _looked(everywhere),
        settings(references=_on_look(images["noise"], None)),
    )
    diff = np.abs(on_look.astype(int) - globally)
    print(f"\n[figures] reference on an all-covering look vs global: max diff {diff.max()} levels")
    assert diff.max() <= 1


def test_a_reference_on_an_unknown_look_is_refused(tiny_models, cache, images):
    with pytest.raises(StoryShadeError) as err:
        render(
            tiny_models, cache, looked(), settings(references=_on_look(images["noise"], "Crate"))
        )
    assert err.value.field == "settings.references.0.look"
    assert "Lighthouse" in err.value.problem
