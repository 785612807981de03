"""A Ray worker maps the job's resolved models onto its own model folders instead of
resolving their names again (docs/architecture.md: models are resolved once per job)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from storyshade.errors import ModelError
from storyshade.models.loader import model_key
from storyshade.models.relocate import relocate
from storyshade.presets import resolve


def test_every_model_file_is_found_under_the_workers_folders(tiny_models: Path, tmp_path: Path):
    settings = resolve("tiny", {"loras": []})
    key = model_key([tiny_models], settings)
    worker = tmp_path / "worker-models"
    shutil.copytree(tiny_models, worker, symlinks=True)
    moved = relocate(key, [tiny_models], [tmp_path / "empty", worker])
    assert moved.checkpoint == worker / key.checkpoint.relative_to(tiny_models)
    assert [p for _, p in moved.controlnets] == [
        worker / p.relative_to(tiny_models) for _, p in key.controlnets
    ]
    assert moved == model_key([worker], settings)  # what resolving there would find
    assert relocate(key, [tiny_models], [tiny_models]) == key  # same machine: unchanged


def test_a_model_the_worker_lacks_is_named(tiny_models: Path, tmp_path: Path):
    key = model_key([tiny_models], resolve("tiny"))
    with pytest.raises(ModelError) as err:
        relocate(key, [tiny_models], [tmp_path])
    assert "this worker has no" in err.value.message and str(tmp_path) in err.value.fix
