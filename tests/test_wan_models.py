"""Wan checkpoints in `models list` / `models check` and at submit: the tiny set is found and
ready, mismatches are refused before anything loads with both files named (a Wan T2V
checkpoint without VACE blocks, a LoRA of the other model size, an SD1.5 LoRA, a pickle),
and a Wan job through a real server: settings of the other engine family, a shot too
short, a size over the server's limit are 4xx; the wan-tiny preset renders every frame."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from storyshade.errors import ModelError, StoryShadeError
from storyshade.models.check import check_preset
from storyshade.models.loader import model_key
from storyshade.models.tiny_wan import TINY_WAN, write_tiny_wan, write_wan_lora
from storyshade.presets import resolve

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wan_root(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny models plus mismatched Wan files: T2V, LoRAs of two sizes, a pickle."""
    root = tmp_path_factory.mktemp("wan-models")
    for folder in tiny_models.iterdir():
        (root / folder.name).symlink_to(folder, target_is_directory=True)
    (root / "wan").mkdir()
    write_tiny_wan(root / "wan" / "tiny-wan-t2v", vace=False)
    write_wan_lora(root / "lora" / "wan-style.safetensors", width=24)
    write_wan_lora(root / "lora" / "wan14b-style.safetensors", width=5120, layers=1, rank=2)
    pickled = root / "wan" / "tiny-wan-pickle"
    shutil.copytree(tiny_models / "checkpoints" / TINY_WAN, pickled)
    for f in (pickled / "transformer").glob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    from storyshade.models.tiny import tiny_unet, write_lora

    write_lora(tiny_unet(), root / "lora" / "sd-style.safetensors", seed=1)
    return root


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO / "backend"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "storyshade", *args], capture_output=True, text=True, env=env
    )


def test_models_tiny_writes_a_wan_set_that_list_and_check_know(tmp_path):
    out = cli("models", "tiny", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "checkpoints" / TINY_WAN / "model_index.json").is_file()
    listed = cli("models", "list", "--models", str(tmp_path))
    assert "Wan VACE, 2 VACE blocks" in listed.stdout
    check = cli("models", "check", "wan-tiny", "--models", str(tmp_path))
    assert check.returncode == 0 and "all models present and compatible" in check.stdout


def wan(**overrides):
    return resolve("wan-tiny", overrides)


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"checkpoint": "tiny-wan-t2v"}, ["tiny-wan-t2v", "no VACE blocks"]),
        ({"checkpoint": "tiny-wan-pickle"}, ["pickle", "transformer"]),
        ({"checkpoint": "tiny-sd15"}, ["tiny-sd15", "not a Wan checkpoint"]),
        (
            {"loras": [{"name": "wan14b-style"}]},
            ["wan14b-style.safetensors", "14B", TINY_WAN, "width 5120"],
        ),
        ({"loras": [{"name": "sd-style"}]}, ["sd-style.safetensors", "not a Wan LoRA", TINY_WAN]),
    ],
)
def test_mismatches_are_refused_before_loading_naming_both_files(wan_root, overrides, says):
    settings = wan(**overrides)
    with pytest.raises(ModelError) as err:
        model_key([wan_root], settings)
    text = f"{err.value.problem} {err.value.fix}"
    for word in says:
        assert word in text, text
    report = check_preset([wan_root], settings)
    assert not report.ok


def test_a_wan_lora_of_the_right_size_is_accepted(wan_root):
    key = model_key([wan_root], wan(loras=[{"name": "wan-style", "weight": 0.5}]))
    assert key.loras[0].path.name == "wan-style.safetensors"
    assert check_preset([wan_root], wan(loras=[{"name": "wan-style"}])).ok


def test_models_list_names_wan_files(wan_root):
    out = cli("models", "list", "--models", str(wan_root)).stdout
    assert "Wan text-to-video" in out and "Wan LoRA (14B)" in out
    assert "REFUSED" in out or "pickle" in out


def test_settings_of_the_other_engine_family_are_refused():
    """Where settings are made (presets.resolve: the server's submit, the CLI)."""
    with pytest.raises(StoryShadeError) as err:
        resolve("wan-tiny,pan-left")
    assert err.value.field == "settings.motion_adapter"
    with pytest.raises(StoryShadeError) as err:
        resolve("wan-tiny", {"motion_scale": 0.5})
    assert err.value.field == "settings.motion_scale"
    with pytest.raises(StoryShadeError) as err:
        resolve("tiny", {"wan_window": 33})
    assert err.value.field == "settings.wan_window"
    resolve("wan-tiny")  # the static camera: nothing refused
    resolve("tiny")


def test_references_the_model_cannot_take_are_refused():
    from storyshade.engines import Shot, check_job

    looked = wan(references=[{"image": "a.png", "look": "Hero"}])
    with pytest.raises(StoryShadeError, match="look 'Hero'") as err:
        check_job(looked, [], Shot(9, looks=("Hero",)))
    assert err.value.field == "settings.references.0.look"
    with pytest.raises(StoryShadeError, match="no\\s+strength"):
        check_job(wan(references=[{"image": "a.png", "weight": 1.5}]), [], Shot(9))


@pytest.fixture(scope="module")
def wan_server(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory):
    from serverproc import ServerProcess

    data = tmp_path_factory.mktemp("wan-data")
    with ServerProcess(data, tiny_models, "--max-resolution", "512") as proc:
        yield proc


def test_submit_refuses_bad_wan_jobs_with_a_400(wan_server, tmp_path):
    from test_server_helpers import bundle_zip, post_job

    five = bundle_zip(tmp_path / "five", frames=5)
    cases = [
        (five, {"preset": "wan-tiny,pan-left"}, "settings.motion_adapter", 400),
        (five, {"preset": "wan-tiny", "motion_scale": 0.5}, "settings.motion_scale", 400),
        (five, {"preset": "tiny", "wan_shift": 5.0}, "settings.wan_shift", 400),
        (bundle_zip(tmp_path / "three", frames=3), {"preset": "wan-tiny"}, "frames", 400),
        (five, {"preset": "wan-tiny", "width": 1024}, "settings.width", 400),
        # a model that does not fit is the models' fault, as for AnimateDiff: a 422
        (five, {"preset": "wan-tiny", "checkpoint": "tiny-sd15"}, "settings.checkpoint", 422),
    ]
    with httpx.Client(base_url=wan_server.url, timeout=60) as client:
        for data, settings, field, status in cases:
            resp = post_job(client, data, settings)
            assert resp.status_code == status, (settings, resp.text)
            assert field in resp.text, (settings, resp.text)


def test_the_wan_tiny_preset_renders_through_the_server(wan_server, tmp_path):
    from test_server_helpers import bundle_zip, submit

    data = bundle_zip(tmp_path / "seven", frames=7, size=(80, 48))
    with httpx.Client(base_url=wan_server.url, timeout=60) as client:
        job = submit(client, data, {"preset": "wan-tiny", "prompt": "a forest"})
        done = wan_server.wait_job(job["id"])
    assert done["state"] == "done", done
    assert sorted(done["frames_done"]) == list(range(1, 8))


def test_an_ip_adapter_is_refused_with_references_on_wan():
    """VACE takes reference images itself: naming an IP-Adapter with references asks for
    something the Wan engines would not use (without references it asks nothing)."""
    refs = [{"image": "a.png"}]
    with pytest.raises(StoryShadeError) as err:
        resolve("wan-tiny", {"references": refs, "ip_adapter": "ip-adapter-plus_sd15"})
    assert err.value.field == "settings.ip_adapter"
    resolve("wan-tiny", {"references": refs})
