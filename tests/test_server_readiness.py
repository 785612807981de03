"""GET /v1/readiness on a real server process: what the presets need, what is missing, and
which quality works now, before a shot is exported (issue 16, finding 3)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from serverproc import ServerProcess


def _get(proc: ServerProcess, query: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{proc.url}/v1/readiness?{query}", timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_default_quality_without_real_models_says_what_is_missing_and_what_works(
    server: ServerProcess, tiny_models: Path
) -> None:
    status, body = _get(server, "preset=anime-cel,static,512x512,standard")
    assert status == 200, body
    assert body["ready"] is False and body["quality"] == "standard"
    roles = {m["role"]: m for m in body["missing"]}
    assert "checkpoint" in roles and roles["checkpoint"]["name"] == "stable-diffusion-v1-5"
    assert "not found" in roles["checkpoint"]["problem"]
    assert body["works_now"] == ["preview", "tiny", "wan-tiny"]  # the tiny sets
    assert body["summary"].startswith("'standard' cannot run here: missing checkpoint")
    assert body["summary"].endswith("works now: preview, tiny, wan-tiny")
    text = json.dumps(body)
    assert str(tiny_models) not in text and str(tiny_models.resolve()) not in text


def test_ready_presets_say_so(server: ServerProcess) -> None:
    for spec, quality in (("tiny", "tiny"), ("watercolor,preview", "preview")):
        status, body = _get(server, f"preset={spec}")
        assert status == 200 and body["ready"] is True, body
        assert body["missing"] == [] and body["summary"] == f"'{quality}' is ready"


def test_unknown_preset_is_a_400_naming_it(server: ServerProcess) -> None:
    status, body = _get(server, "preset=anime-cel,no-such-look")
    assert status == 400 and "no-such-look" in body["error"] and body["field"] == "preset"


def test_server_without_models_offers_only_preview(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "data") as proc:
        status, body = _get(proc, "preset=tiny")
    assert status == 200 and body["ready"] is False
    assert body["works_now"] == ["preview"], body


@pytest.mark.parametrize("spec", ["", "standard"])
def test_defaults_apply_when_names_are_left_out(server: ServerProcess, spec: str) -> None:
    status, body = _get(server, f"preset={spec}")
    assert status == 200 and body["layers"]["quality"] == "standard"
