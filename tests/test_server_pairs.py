"""Settings the engine checks together are checked together at submit (#23 item 5): a job
that cannot run is a 4xx naming the field when it is submitted, never a job that fails
after its models load.

`RULES` walks every check in the engine and control code that refuses a combination of a
job's settings (or settings and its shot), each with a request that breaks it;
`test_every_engine_check_is_walked` reads the engine's source and fails when a check there
is missing from the walk, so a new pair cannot be added without its submit-time check.
"""

from __future__ import annotations

import ast
import base64
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import write_synthetic_bundle
from serverproc import REPO, ServerProcess
from test_server_helpers import post_job, zip_dir

TINY = {"preset": "tiny", "steps": 2}
STOCK = {**TINY, "engine": "animatediff-stock"}
DEPTH = "tiny-controlnet-depth"
PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)


def _plain(root: Path) -> bytes:
    return zip_dir(write_synthetic_bundle(root, frames=2))


def _five(root: Path) -> bytes:  # the shortest shot a Wan engine takes
    return zip_dir(write_synthetic_bundle(root, frames=5))


def _long(root: Path) -> bytes:  # more frames than the tiny v3 adapter takes at once (32)
    return zip_dir(write_synthetic_bundle(root, frames=33, size=(32, 24)))


def _with_look(root: Path) -> bytes:
    look = [{"id": 1, "name": "Girl", "prompt": "a girl", "weight": 1.0}]
    ids = lambda i: np.ones((48, 64), np.uint8)  # noqa: E731
    return zip_dir(write_synthetic_bundle(root, frames=2, regions=look, ids_fn=ids))


def _with_held(root: Path) -> bytes:
    """Version 3: frame 1 is held (re-shading frame 2 from an earlier take)."""
    bundle = write_synthetic_bundle(root, frames=2)
    from PIL import Image

    (bundle / "take").mkdir()
    Image.new("RGB", (64, 48), (90, 90, 90)).save(bundle / "take" / "0001.png")
    shot = json.loads((bundle / "shot.json").read_text())
    shot["version"] = 3
    shot["frames"][0]["take"] = "take/0001.png"
    (bundle / "shot.json").write_text(json.dumps(shot))
    return zip_dir(bundle)


def _with_reference(root: Path) -> bytes:
    bundle = write_synthetic_bundle(root, frames=2)
    (bundle / "references").mkdir()
    (bundle / "references" / "ref.png").write_bytes(PNG_1PX)
    return zip_dir(bundle)


REF = [{"image": "references/ref.png"}]
WAN_STOCK = {"preset": "wan-tiny", "engine": "wan-vace-stock", "wan_window": 81, "wan_overlap": 16}
VACE = "vace"

# name: (where the engine checks it, bundle, settings, status, field)
RULES: dict[str, tuple[str, object, dict, int, str]] = {
    "overlap as long as the window": (
        "engine/windowed.py:settings.context_overlap", _plain,
        {**TINY, "context_length": 4, "context_overlap": 4}, 400, "settings.context_overlap",
    ),
    "window longer than the motion adapter takes": (
        "engine/windowed.py:settings.context_length", _plain,
        {**TINY, "context_length": 40}, 422, "settings.context_length",
    ),
    "fixed depth without a near distance": (
        "controls/depth.py:settings.depth_near", _plain,
        {**TINY, "depth_range": "fixed", "depth_far": 9.0}, 400, "settings.depth_near",
    ),
    "fixed depth without a far distance": (
        "controls/depth.py:settings.depth_near", _plain,
        {**TINY, "depth_range": "fixed", "depth_near": 1.0}, 400, "settings.depth_far",
    ),
    "fixed depth with far before near": (
        "controls/depth.py:settings.depth_far", _plain,
        {**TINY, "depth_range": "fixed", "depth_near": 5.0, "depth_far": 2.0}, 400,
        "settings.depth_far",
    ),
    "stock engine with a hires pass": (
        "engines.py:settings.*", _plain,
        {**STOCK, "hires": {"scale": 1.5}}, 400, "settings.hires",
    ),
    "stock engine, a shot over the adapter's frames, no free_noise": (
        "engine/animatediff.py:settings.engine", _long, STOCK, 400, "settings.engine",
    ),
    "stock engine with guess mode and CFG": (
        "engine/animatediff.py:settings.controls.*.guess_mode", _plain,
        {**STOCK, "guidance_scale": 7.5,
         "controls": {"depth": {"model": DEPTH, "guess_mode": True}}},
        400, "settings.controls.depth.guess_mode",
    ),
    "stock engine with guess mode on one ControlNet of two": (
        "engine/animatediff.py:settings.controls.*.guess_mode", _plain,
        {**STOCK, "guidance_scale": 1.0,
         "controls": {"depth": {"model": DEPTH, "guess_mode": True},
                      "normal": {"model": "tiny-controlnet-normal"}}},
        400, "settings.controls.depth.guess_mode",
    ),
    "stock engine re-shading held frames": (
        "engines.py:settings.engine", _with_held, STOCK, 400, "settings.engine",
    ),
    "stock engine with looks": (
        "engines.py:settings.engine", _with_look, STOCK, 400, "settings.engine",
    ),
    "stock engine with references": (
        "engines.py:settings.*", _with_reference,
        {**STOCK, "references": REF}, 400, "settings.references",
    ),
    "a reference for a look the shot does not have": (
        "engine/references.py:settings.references.*.look", _with_reference,
        {**TINY, "references": [{**REF[0], "look": "Nobody"}]}, 400,
        "settings.references.0.look",
    ),
    "colour matching without windows": (
        "engines.py:settings.*", _plain,
        {"preset": "preview", "color_match": {"strength": 1.0}}, 400, "settings.color_match",
    ),
    "compile 'on' on an engine that cannot compile": (
        "engines.py:settings.*", _plain,
        {"preset": "preview", "compile": "on"}, 400, "settings.compile",
    ),
    "step cache past the steps": (
        "settings.py:settings.step_cache", _plain,
        {**TINY, "steps": 2, "step_cache": 3}, 400, "settings.step_cache",
    ),
    "step cache on the stock engine": (
        "engines.py:settings.*", _plain,
        {**STOCK, "steps": 4, "step_cache": 2}, 400, "settings.step_cache",
    ),
    "a ControlNet that ends before it starts": (
        "settings.py:settings.controls.*.end", _plain,
        {**TINY, "controls": {"depth": {"model": DEPTH, "start": 0.6, "end": 0.3}}}, 400,
        "settings.controls.depth.end",
    ),
    "the lcm sampler without an LCM model": (
        "models/compat.py:settings.scheduler", _plain,
        {**TINY, "scheduler": "lcm"}, 422, "settings.scheduler",
    ),
    "a hires pass over the server's resolution": (
        "server/submit.py:settings.hires.scale", _plain,
        {"preset": "preview", "width": 512, "height": 512, "hires": {"scale": 2.0}}, 400,
        "settings.hires.scale",
    ),
    "a device this server does not have": (
        "models/loader.py:settings.device", _plain,
        {"preset": "preview", "device": "cuda:7"}, 400, "settings.device",
    ),
    "a Wan shot under one latent group": (
        "engine/wan_checks.py:settings.engine", _plain, {"preset": "wan-tiny"}, 400, "frames",
    ),
    "the stock Wan engine with two control videos": (
        "engine/wan_checks.py:settings.controls", _five,
        {**WAN_STOCK, "controls": {"depth": {"model": VACE, "scale": 1.0},
                                   "normal": {"model": VACE, "scale": 0.5}}},
        400, "settings.controls",
    ),
    "the stock Wan engine with a partial control span": (
        "engine/wan_checks.py:settings.controls.*.start", _five,
        {**WAN_STOCK, "controls": {"depth": {"model": VACE, "scale": 1.0, "start": 0.5}}},
        400, "settings.controls.depth.start",
    ),
    "the stock Wan engine at a size not in 16s": (
        "engine/wan_checks.py:settings.engine", _five, {**WAN_STOCK, "width": 72}, 400,
        "settings.engine",
    ),
    "a VACE reference with a strength": (
        "engine/wan_checks.py:settings.references.*.weight", _with_reference,
        {"preset": "wan-tiny", "references": [{**REF[0], "weight": 1.5}]}, 400,
        "settings.references.0.weight",
    ),
    "a device that is not a device": (
        "models/loader.py:settings.device", _plain,
        {**TINY, "device": "toaster"}, 400, "settings.device",
    ),
}  # fmt: skip

# Checks in the engine and control code that refuse something other than a combination of
# a job's settings (or its settings and shot), with where that is refused instead.
NOT_PAIRS = {
    "engine/wan_references.py:settings.color_match.image": "an unreadable colour-match "
    "frame: check_references at submit",
    "engine/levers.py:settings.compile": "compile 'on' on a machine without a compiler or "
    "Triton: a fact of the machine, checked at submit (engine check)",
    "engine/color_match.py:settings.color_match": "an unreadable colour-match frame: "
    "check_references at submit",
    "engines.py:settings.controls.*": "a control role the engine cannot steer with: every "
    "engine here takes every role (a role-limited engine adds its case)",
    "engines.py:settings.references.*.look": "a reference confined to a look on an engine "
    "that cannot: every engine here with references can (one that cannot adds its case)",
    "engine/references.py:settings.ip_adapter": "a model file on disk: model_key at submit",
    "controls/detectors.py:settings.controls.detector": "a learned detector's weights on disk",
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path):
    data = tmp_path_factory.mktemp("pairs") / "data"
    with ServerProcess(data, tiny_models, "--max-resolution", "768") as proc:
        yield proc


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_pair_the_engine_checks_is_refused_at_submit(srv, tmp_path, rule) -> None:
    _where, bundle, settings, status, field = RULES[rule]
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        before = len(c.get("/v1/jobs").json()["jobs"])
        resp = post_job(c, bundle(tmp_path / "b"), settings)  # type: ignore[operator]
        if resp.status_code == 201:  # accepted: it would fail later; don't let it run
            c.delete(f"/v1/jobs/{resp.json()['id']}")
        assert resp.status_code == status, resp.text
        assert resp.json()["field"] == field, resp.json()
        assert len(c.get("/v1/jobs").json()["jobs"]) == before, "a refused job was queued"


def test_the_devices_a_server_has_are_in_its_health(srv) -> None:
    health = srv.get("/v1/health")
    assert health["devices"][:2] == ["auto", "cpu"]
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        for device in health["devices"]:
            resp = post_job(c, _plain(Path(srv.data.parent / f"d-{device}")), {
                "preset": "preview", "device": device})  # fmt: skip
            assert resp.status_code == 201, resp.text
            c.delete(f"/v1/jobs/{resp.json()['id']}")


def _checks(path: Path) -> set[str]:
    """'file:settings.field' of every raise in `path` that names a settings field."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    consts = {
        t.id: n.value.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for kw in node.keywords:
            if kw.arg != "field":
                continue
            parts = {
                id(c) for j in ast.walk(kw.value) if isinstance(j, ast.JoinedStr) for c in j.values
            }
            for value in ast.walk(kw.value):
                text = None
                if id(value) in parts:  # a piece of an f-string, read with its whole
                    continue
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    text = value.value
                elif isinstance(value, ast.Name):
                    text = consts.get(value.id)
                elif isinstance(value, ast.JoinedStr):
                    text = "".join(
                        v.value if isinstance(v, ast.Constant) else "*" for v in value.values
                    )
                if isinstance(text, str) and text.startswith("settings."):
                    found.add(f"{path.relative_to(REPO / 'backend/storyshade')}:{text}")
    return found


def test_every_engine_check_is_walked() -> None:
    root = REPO / "backend" / "storyshade"
    found = set()
    for path in [
        root / "engines.py",
        *(root / "engine").glob("*.py"),
        *(root / "controls").glob("*.py"),
    ]:
        found |= _checks(path)
    walked = {where for where, *_ in RULES.values()} | set(NOT_PAIRS)
    missing = sorted(found - walked)
    assert not missing, (
        f"the engine refuses {missing} but the walk has no case for it: add one to RULES "
        "(and check it at submit) or, if it is no combination of settings, to NOT_PAIRS"
    )
    assert len(found) >= 10  # the scan itself still finds the engine's checks
