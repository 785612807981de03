"""Each stage once (#12): a job's models are resolved and its bundle hashed when it is
submitted, and every later stage (stage-cache keys, the engine's loader, the Ray
dispatcher) uses those instead of working them out again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_synthetic_bundle
from storyshade.bundle import content_hash, load_bundle
from storyshade.cache import StageCache
from storyshade.errors import ModelError
from storyshade.job_input import prepare
from storyshade.models.loader import ModelCache
from storyshade.render import render, render_bundle
from storyshade.server.jobs import JobStore
from test_windowed import tiny_settings


def test_render_uses_the_jobs_resolved_models(tmp_path: Path, tiny_models: Path) -> None:
    """With no model folders at all, only a job that carries its models can render: so
    neither the stage cache's keys nor the engine's loader resolve them again."""
    bundle = load_bundle(write_synthetic_bundle(tmp_path / "shot", frames=2))
    settings = tiny_settings(steps=1, width=64, height=64, context_length=2, context_overlap=1)
    with pytest.raises(ModelError):
        render_bundle(bundle, settings, tmp_path / "nowhere", [], ModelCache(size=1))
    work = prepare(bundle, settings, [tiny_models])
    stages = StageCache(tmp_path / "stages")
    written = render(work, tmp_path / "out", [], ModelCache(size=1), stages=stages)
    assert [p.name for p in written] == ["0001.png", "0002.png"]
    assert stages.keys(work, []).bundle == content_hash(bundle) == work.bundle_hash


def test_a_submitted_job_keeps_its_bundle_hash(tmp_path: Path, synthetic_bundle: Path) -> None:
    """Hashed once at submit and written into the job's record, so a job resumed after a
    restart does not hash its passes again either."""
    store = JobStore(tmp_path / "data", [], start=False)
    job_dir = store.job_dir("j1")
    job_dir.mkdir(parents=True)
    (job_dir / "bundle").symlink_to(synthetic_bundle, target_is_directory=True)
    bundle = load_bundle(job_dir / "bundle")
    job = store.submit("j1", bundle, tiny_settings(engine="preview"))
    record = json.loads((job_dir / "job.json").read_text())
    assert record["bundle_hash"] == content_hash(bundle) == job.bundle_hash
    assert store.inputs["j1"].models is None  # the preview engine needs none
