"""`storyshade models pull` as a user runs it: a real process against a real HTTP stand-in for
the hub (tests/hubstandin.py) serving the tiny models under the real repository ids, laid
out like the real repositories (fp16/fp32/non-EMA copies, pickles, root single files)."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hub_repos import DEPTH, IP, LINEART, SD15, SD15_FILES, WAN, WAN_FILES, ZOOM
from serverproc import free_port

REPO = Path(__file__).resolve().parents[1]
RECORD = ".storyshade-pull.json"
UNET16 = f"{SD15}/unet/diffusion_pytorch_model.fp16.safetensors"
DEPTH16 = f"{DEPTH}/diffusion_pytorch_model.fp16.safetensors"


def pull_env(hub, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A user's environment pointed at the stand-in: no stored token, no proxy, and no
    offline switch at all (the test session runs with HF_HUB_OFFLINE=1; a user has none,
    and StoryShade's own offline default must not stop a pull the user asked for)."""
    drop = {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "STORYSHADE_MODELS", "STORYSHADE_OFFLINE"}
    drop |= {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        drop |= {name, name.lower()}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        PYTHONPATH=str(REPO / "backend"),
        HF_ENDPOINT=hub.url,
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(tmp_path / "hf-home"),
    )
    env.update(extra)
    return env


def pull_cmd(models: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "storyshade", "models", "pull", *args, "--models", str(models)]


def pull(hub, tmp_path: Path, models: Path, *args: str, env=None, **kw):
    return subprocess.run(
        pull_cmd(models, *args),
        capture_output=True,
        text=True,
        env=env or pull_env(hub, tmp_path),
        timeout=180,
        **kw,
    )


def files_in(folder: Path) -> set[str]:
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name != RECORD
    }


def fetched(hub) -> list[str]:
    """Repository paths the pull asked to download (resolve requests)."""
    out = []
    for r in hub.requests():
        if "/resolve/" in r["path"]:
            repo_and_rest = r["path"].strip("/").split("/")
            out.append("/".join(repo_and_rest[:2] + repo_and_rest[4:]))
    return out


def hidden(models: Path) -> list[Path]:
    return [p for p in models.rglob(".*.pull")]


def test_pull_a_preset_then_it_is_ready_and_loads(fresh_hub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    done = pull(fresh_hub, tmp_path, models, "anime-cel,standard")
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.strip().splitlines()[-1] == "ready"
    assert "anime-cel,standard: ready" in done.stdout
    assert "downloading" not in done.stdout  # progress went to the terminal bars (stderr)
    assert "total" in done.stderr and "B/s" in done.stderr

    sd, repo = models / "checkpoints" / "stable-diffusion-v1-5", fresh_hub.root / SD15
    assert files_in(sd) == SD15_FILES  # the diffusers parts only, one variant, no pickle
    for local in SD15_FILES:  # fp16 where the repository has it, saved under plain names
        variant = repo / re.sub(r"(model)\.safetensors$", r"\1.fp16.safetensors", local)
        source = variant if variant.exists() else repo / local
        assert (sd / local).read_bytes() == source.read_bytes(), local
    motion = models / "motion" / "animatediff-motion-adapter-v1-5-3"
    weights = "diffusion_pytorch_model.safetensors"
    assert files_in(motion) == {"config.json", weights}  # no fp16 copy there: the plain one
    assert (motion / weights).read_bytes() == (
        fresh_hub.root / "guoyww" / motion.name / weights
    ).read_bytes()
    depth = models / "controlnet" / "control_v11f1p_sd15_depth"
    assert (depth / weights).read_bytes() == (fresh_hub.root / DEPTH16).read_bytes()
    assert not hidden(models)

    asked = fetched(fresh_hub)
    assert not [
        p for p in asked if re.search(r"\.bin$|\.ckpt$|non_ema|pruned|safety|README|images/", p)
    ]
    assert len(asked) == len(set(asked))  # each file once

    check = subprocess.run(
        [sys.executable, "-m", "storyshade", "models", "check", "anime-cel,standard", "--models", str(models)],
        capture_output=True, text=True, env=pull_env(fresh_hub, tmp_path), timeout=120,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout
    # The fp16 files under plain names load through the very loader renders use.
    from storyshade.models.loader import ModelCache, model_key
    from storyshade.presets import resolve

    pipe = ModelCache().get(model_key([models], resolve("anime-cel,standard")))
    assert pipe.unet is not None and len(pipe.controlnet.nets) == 2


def test_dry_run_lists_files_and_bytes_and_writes_nothing(fresh_hub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    done = pull(
        fresh_hub,
        tmp_path,
        models,
        "stable-diffusion-v1-5",
        "--variant",
        "fp32",
        "--dry-run",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    (model,) = plan["models"]
    assert {f["path"] for f in model["files"]} == SD15_FILES
    repo = fresh_hub.root / SD15
    assert plan["total_bytes"] == sum((repo / f).stat().st_size for f in SD15_FILES)
    assert plan["needed_bytes"] == plan["total_bytes"] and plan["free_bytes"] > 0
    assert not models.exists() and fetched(fresh_hub) == []

    text = pull(fresh_hub, tmp_path, models, "stable-diffusion-v1-5", "--dry-run")
    assert (
        "unet/diffusion_pytorch_model.safetensors" in text.stdout and "to download" in text.stdout
    )


def test_variant_fp32_takes_the_plain_weights(fresh_hub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    done = pull(fresh_hub, tmp_path, models, "stable-diffusion-v1-5", "--variant", "fp32")
    assert done.returncode == 0, done.stderr
    sd, repo = models / "checkpoints" / "stable-diffusion-v1-5", fresh_hub.root / SD15
    for local in SD15_FILES:
        assert (sd / local).read_bytes() == (repo / local).read_bytes(), local
    record = json.loads((sd / RECORD).read_text())
    assert record["variant"] == "fp32" and record["complete"] and record["repo"] == SD15


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_a_pull_killed_mid_file_resumes_to_identical_bytes(fresh_hub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    fresh_hub.configure(throttle={UNET16: 200_000})
    proc = subprocess.Popen(
        pull_cmd(models, "stable-diffusion-v1-5"),
        env=pull_env(fresh_hub, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    staging = models / "checkpoints" / ".stable-diffusion-v1-5.pull"
    part = staging / "unet" / "diffusion_pytorch_model.safetensors.part"
    try:
        _wait_for(lambda: part.is_file() and part.stat().st_size > 100_000)
    finally:
        proc.kill()
        proc.wait()
    kept = part.stat().st_size
    size = (fresh_hub.root / UNET16).stat().st_size
    assert 0 < kept < size
    # The half folder is hidden: discovery never sees it, a check says the model is missing.
    assert not (models / "checkpoints" / "stable-diffusion-v1-5").exists()
    from storyshade.models.discover import discover

    assert [f for f in discover([models], hf_cache=False) if f.kind == "checkpoint"] == []

    fresh_hub.configure()
    fresh_hub.clear_log()
    done = pull(fresh_hub, tmp_path, models, "stable-diffusion-v1-5")
    assert done.returncode == 0, done.stderr
    sd = models / "checkpoints" / "stable-diffusion-v1-5"
    assert (sd / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == (
        fresh_hub.root / UNET16
    ).read_bytes()
    ranges = [
        r["range"]
        for r in fresh_hub.requests()
        if r["path"].endswith("unet/diffusion_pytorch_model.fp16.safetensors")
    ]
    start = int(re.fullmatch(r"bytes=(\d+)-", ranges[0])[1])  # type: ignore[index]
    assert kept <= start < size  # it continued, it did not start over
    assert "model_index.json" not in " ".join(fetched(fresh_hub))  # finished files stay
    assert not hidden(models)


def test_refuses_before_writing_when_the_disk_is_too_small(fresh_hub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    fresh_hub.configure(sizes={UNET16: 10**17})  # the hub's metadata says 100 PB
    done = pull(fresh_hub, tmp_path, models, "stable-diffusion-v1-5")
    assert done.returncode == 2
    found = re.search(r"needs .*\((\d+) bytes\) plus .* and .*\((\d+) bytes\) is free", done.stderr)
    assert found, done.stderr
    assert int(found[1]) > 10**17 and 0 < int(found[2]) < 10**17
    assert fetched(fresh_hub) == [] and not hidden(models)


def test_a_full_disk_mid_download_keeps_what_it_has_and_says_how_much_more(
    fresh_hub, tmp_path: Path
) -> None:
    models = tmp_path / "models"

    def small_disk() -> None:  # writes past 600 KB fail as they would on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (600_000, 600_000))

    done = pull(fresh_hub, tmp_path, models, "stable-diffusion-v1-5", preexec_fn=small_disk)
    assert done.returncode == 2
    assert "disk filled up while writing unet/diffusion_pytorch_model.safetensors" in done.stderr
    assert "kept in" in done.stderr and "free at least" in done.stderr
    part = (
        models
        / "checkpoints"
        / ".stable-diffusion-v1-5.pull"
        / "unet"
        / "diffusion_pytorch_model.safetensors.part"
    )
    assert part.stat().st_size == 600_000

    fresh_hub.clear_log()
    again = pull(fresh_hub, tmp_path, models, "stable-diffusion-v1-5")
    assert again.returncode == 0, again.stderr
    ranges = [r["range"] for r in fresh_hub.requests() if r["range"]]
    assert "bytes=600000-" in ranges


def test_gated_repository_names_the_licence_page_and_the_token(fresh_hub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    fresh_hub.configure(gated={ZOOM: ["hf_granted"]})
    name = "animatediff-motion-lora-zoom-in"
    none = pull(fresh_hub, tmp_path, models, name)
    assert none.returncode == 2
    assert f"{ZOOM} is gated" in none.stderr and "(401)" in none.stderr
    assert f"{fresh_hub.url}/{ZOOM}" in none.stderr and "--token" in none.stderr
    assert "HF_TOKEN" in none.stderr

    wrong = pull(fresh_hub, tmp_path, models, name, "--token", "hf_wrong")
    assert wrong.returncode == 2 and "has no access" in wrong.stderr and "(403)" in wrong.stderr
    assert not hidden(models) and not (models / "lora" / name).exists()

    ok = pull(
        fresh_hub, tmp_path, models, name, env=pull_env(fresh_hub, tmp_path, HF_TOKEN="hf_granted")
    )
    assert ok.returncode == 0, ok.stderr
    assert (models / "lora" / name / "diffusion_pytorch_model.safetensors").is_file()


@pytest.mark.parametrize(
    ("name", "switch", "says"),
    [
        ("dreamshaper-8", {}, "repository Lykon/dreamshaper-8 not found"),
        ("ip-adapter_sd15", {}, f"{IP} has no models/ip-adapter_sd15.safetensors"),
        ("control_v11f1p_sd15_depth", {"vanish": [DEPTH16]}, "no longer exists"),
    ],
)
def test_a_repository_or_file_that_is_gone(fresh_hub, tmp_path, name, switch, says) -> None:
    fresh_hub.configure(**switch)
    done = pull(fresh_hub, tmp_path, tmp_path / "models", name)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert "404" in done.stderr or "any more" in done.stderr


def test_no_network_names_the_manual_steps(fresh_hub, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    env = pull_env(fresh_hub, tmp_path, HF_ENDPOINT=closed)
    done = pull(fresh_hub, tmp_path, tmp_path / "models", "control_v11f1p_sd15_depth", env=env)
    assert done.returncode == 2
    assert f"cannot reach {closed}" in done.stderr
    assert f"{closed}/{DEPTH}/tree/main" in done.stderr
    assert "controlnet/control_v11f1p_sd15_depth" in done.stderr and "HTTPS_PROXY" in done.stderr


def test_the_proxy_in_the_environment_is_used(fresh_hub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    env = pull_env(fresh_hub, tmp_path, HF_ENDPOINT="http://hub.invalid", HTTP_PROXY=fresh_hub.url)
    done = pull(fresh_hub, tmp_path, models, "control_v11f1p_sd15_depth", env=env)
    assert done.returncode == 0, done.stderr
    assert fresh_hub.requests() and all(r["proxied"] for r in fresh_hub.requests())
    broken = f"http://127.0.0.1:{free_port()}"
    env = pull_env(fresh_hub, tmp_path, HF_ENDPOINT="http://hub.invalid", HTTP_PROXY=broken)
    failed = pull(fresh_hub, tmp_path, tmp_path / "other", "control_v11f1p_sd15_depth", env=env)
    assert failed.returncode == 2 and f"HTTP_PROXY={broken}" in failed.stderr


def test_a_repository_with_only_pickles_is_refused(fresh_hub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    done = pull(fresh_hub, tmp_path, models, "control_v11p_sd15_lineart")
    assert done.returncode == 2
    assert f"{LINEART}: the root holds weights only as pickle files" in done.stderr
    assert fetched(fresh_hub) == [] and not models.joinpath("controlnet").exists()


@pytest.mark.parametrize(
    ("env", "switch"),
    [
        ({"STORYSHADE_OFFLINE": "1"}, "STORYSHADE_OFFLINE"),
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE"),
    ],
)
def test_offline_switches_refuse(fresh_hub, tmp_path, env, switch) -> None:
    done = pull(
        fresh_hub,
        tmp_path,
        tmp_path / "models",
        "control_v11f1p_sd15_depth",
        env=pull_env(fresh_hub, tmp_path, **env),
    )
    assert done.returncode == 2 and f"downloads are switched off here ({switch}=1)" in done.stderr
    assert fresh_hub.requests() == []


def test_unknown_names_and_an_unwritable_folder(fresh_hub, tmp_path: Path) -> None:
    done = pull(fresh_hub, tmp_path, tmp_path / "models", "no-such-thing")
    assert done.returncode == 2
    assert "'no-such-thing' is neither a preset nor a model" in done.stderr
    assert "anime-cel" in done.stderr and "stable-diffusion-v1-5" in done.stderr
    blocker = tmp_path / "a-file"  # a folder cannot be made inside a file, even by root
    blocker.write_text("not a folder")
    done = pull(fresh_hub, tmp_path, blocker / "models", "control_v11f1p_sd15_depth")
    assert (
        done.returncode == 2
        and f"the models folder {blocker / 'models'} cannot be written" in done.stderr
    )
    assert fresh_hub.requests() == []


def test_render_never_downloads_even_when_online(fresh_hub, tmp_path: Path) -> None:
    """Only `models pull` fetches: a render whose models are missing stops and says so,
    with the hub reachable and downloads allowed."""
    from conftest import write_synthetic_bundle

    bundle = write_synthetic_bundle(tmp_path / "bundle")
    done = subprocess.run(
        [sys.executable, "-m", "storyshade", "render", str(bundle), "--preset", "anime-cel",
         "--models", str(tmp_path / "models"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=pull_env(fresh_hub, tmp_path), timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "not found" in done.stderr and "models pull" in done.stderr
    assert fresh_hub.requests() == []


def test_two_pulls_of_one_model_at_once_write_each_file_once(fresh_hub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    fresh_hub.configure(throttle={DEPTH16: 400_000})
    cmd, env = pull_cmd(models, "control_v11f1p_sd15_depth"), pull_env(fresh_hub, tmp_path)
    first = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    part = (
        models
        / "controlnet"
        / ".control_v11f1p_sd15_depth.pull"
        / "diffusion_pytorch_model.safetensors.part"
    )
    _wait_for(part.is_file)
    second = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    assert "another pull is downloading control_v11f1p_sd15_depth" in outs[1][1]
    assert fetched(fresh_hub).count(DEPTH16) == 1
    final = (
        models / "controlnet" / "control_v11f1p_sd15_depth" / "diffusion_pytorch_model.safetensors"
    )
    assert final.read_bytes() == (fresh_hub.root / DEPTH16).read_bytes()


def test_a_stale_half_folder_from_an_older_version_is_cleaned(fresh_hub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    stale = models / "controlnet" / ".control_v11f1p_sd15_depth.pull"
    stale.mkdir(parents=True)
    (stale / RECORD).write_text(json.dumps({"format": "storyshade.pull", "version": 0}))
    (stale / "diffusion_pytorch_model.safetensors.part").write_bytes(b"junk from before")
    from storyshade.models.discover import discover

    assert discover([models], hf_cache=False) == []  # hidden: never loaded
    done = pull(fresh_hub, tmp_path, models, "control_v11f1p_sd15_depth")
    assert done.returncode == 0, done.stderr
    assert "removed an unfinished download of control_v11f1p_sd15_depth" in done.stderr
    final = (
        models / "controlnet" / "control_v11f1p_sd15_depth" / "diffusion_pytorch_model.safetensors"
    )
    assert final.read_bytes() == (fresh_hub.root / DEPTH16).read_bytes()
    assert not stale.exists()


def test_a_file_that_does_not_match_the_hub_hash_is_refused(fresh_hub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    fresh_hub.configure(corrupt=[DEPTH16])
    done = pull(fresh_hub, tmp_path, models, "control_v11f1p_sd15_depth")
    assert (
        done.returncode == 2 and "does not match the hub's hash after two downloads" in done.stderr
    )
    assert not (models / "controlnet" / "control_v11f1p_sd15_depth").exists()


def test_the_wan_preset_pulls_to_ready(fresh_hub, tmp_path: Path) -> None:
    """`models pull wan`: the diffusers parts of the Wan VACE repository (here the tiny set,
    sharded as the real one is) and then `models check wan` says ready, so it loads."""
    models = tmp_path / "models"
    done = pull(fresh_hub, tmp_path, models, "wan")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "ready" in done.stdout
    wan = models / "checkpoints" / "Wan2.1-VACE-1.3B-diffusers"
    assert files_in(wan) == WAN_FILES  # shards and their index, tokenizer, no README/assets
    for local in WAN_FILES:
        assert (wan / local).read_bytes() == (fresh_hub.root / WAN / local).read_bytes()


def test_the_stand_in_answers_huggingface_hubs_own_downloads(
    fresh_hub, tmp_path, monkeypatch
) -> None:
    """The stand-in is only worth its tests if the hub library itself accepts it."""
    from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    config = hf_hub_download(DEPTH, "config.json", endpoint=fresh_hub.url, cache_dir=tmp_path / "c")
    weights = hf_hub_download(DEPTH, "diffusion_pytorch_model.fp16.safetensors", endpoint=fresh_hub.url, local_dir=tmp_path / "l")  # fmt: skip
    assert Path(config).read_bytes() == (fresh_hub.root / DEPTH / "config.json").read_bytes()
    assert Path(weights).read_bytes() == (fresh_hub.root / DEPTH16).read_bytes()
    snap = snapshot_download(
        DEPTH, endpoint=fresh_hub.url, cache_dir=tmp_path / "s", allow_patterns=["*.json"]
    )
    assert (Path(snap) / "config.json").is_file()
    api = HfApi(endpoint=fresh_hub.url)
    tree = {e.path for e in api.list_repo_tree(SD15, recursive=True)}
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in tree and "unet" in tree
    (info,) = api.get_paths_info(SD15, ["unet/diffusion_pytorch_model.fp16.safetensors"])
    assert info.lfs is not None and info.size == (fresh_hub.root / UNET16).stat().st_size
