"""Bundle + settings → PNG frames on disk. The one render path for CLI, server and tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from storyshade.bundle import Bundle
from storyshade.cache import StageCache, StageKeys, through_stages
from storyshade.cancel import CancelToken
from storyshade.controls import ControlSet, build_controls
from storyshade.controls.sizing import cover_resize
from storyshade.engine import get_engine
from storyshade.job_input import JobInput, prepare
from storyshade.models.loader import ModelCache
from storyshade.progress import Reporter
from storyshade.references import resolve_paths
from storyshade.settings import Settings
from storyshade.wan_settings import check_engine_settings
from storyshade.wire.layout import frame_name
from storyshade.wire.states import Event, Stage


def save_frame(out_dir: Path, frame: int, rgb: np.ndarray, size: tuple[int, int]) -> Path:
    """Write one frame at the scene's render size; the write is atomic (tmp + rename)."""
    w, h = size
    if rgb.shape[1] != w or rgb.shape[0] != h:
        rgb = cover_resize(rgb, w, h)
    path = out_dir / frame_name(frame)
    tmp = path.with_suffix(".tmp")
    Image.fromarray(rgb).save(tmp, format="PNG")
    tmp.replace(path)
    return path


def held_frames(bundle: Bundle, controls: ControlSet) -> dict[int, np.ndarray]:
    """Held frames (re-shading a range) at generation size, placed as the controls are."""
    held: dict[int, np.ndarray] = {}
    for index in bundle.held():
        rgb = bundle.read_take(index)
        if controls.size_map:
            rgb = controls.size_map.place(controls.size_map.to_content(rgb), 127)
        held[index] = rgb
    return held


def render_bundle(
    bundle: Bundle,
    settings: Settings,
    out_dir: Path,
    roots: list[Path],
    cache: ModelCache | None = None,
    reporter: Reporter | None = None,
    stages: StageCache | None = None,
    *,
    cancel: CancelToken | None = None,
) -> list[Path]:
    """`render` for a bundle and settings nobody has prepared yet (the CLI, tests)."""
    settings = resolve_paths(settings, bundle.root)  # relative references: beside the shot
    work = prepare(bundle, settings, roots)
    return render(work, out_dir, roots, cache, reporter, stages, cancel=cancel)


def render(
    work: JobInput,
    out_dir: Path,
    roots: list[Path],
    cache: ModelCache | None = None,
    reporter: Reporter | None = None,
    stages: StageCache | None = None,
    *,
    cancel: CancelToken | None = None,
) -> list[Path]:
    """Render every frame into `out_dir` (every frame but the held ones, when re-shading
    part of a take: the caller already has those). With `stages`, unchanged stages are not
    recomputed: an identical rerun copies the cached frames, a prompt-only change reuses the
    controls. Once `cancel` is cancelled, `Cancelled` is raised at the next frame, window or
    model call; the frames saved so far stay in `out_dir`."""
    reporter = reporter or Reporter()
    cancel = cancel or CancelToken()
    out_dir.mkdir(parents=True, exist_ok=True)
    return through_stages(
        stages,
        work,
        roots,
        out_dir,
        reporter,
        lambda keys: _render(work, out_dir, roots, cache, reporter, cancel, stages, keys),
        cancel=cancel,
    )


def _render(
    work: JobInput,
    out_dir: Path,
    roots: list[Path],
    cache: ModelCache | None,
    reporter: Reporter,
    cancel: CancelToken,
    stages: StageCache | None,
    keys: StageKeys | None,
) -> list[Path]:
    bundle, settings = work.bundle, work.settings
    check_engine_settings(settings)  # the other engine family's settings: refused, not ignored
    embeddings = stages.embeddings if stages else None
    engine = get_engine(settings.engine, roots, cache or ModelCache(), work.models, embeddings)
    if stages and keys:
        controls = stages.controls(
            keys.controls,
            lambda: build_controls(
                bundle, settings, reporter, roots=roots, workdir=stages.control_dir, cancel=cancel
            ),
            reporter,
        )
    else:
        controls = build_controls(bundle, settings, reporter, roots=roots, cancel=cancel)
    written: list[Path] = []  # paths only: each frame is saved as the engine yields it
    total = len(bundle.shot.generated_frames)
    held = held_frames(bundle, controls) if bundle.held() else None
    for index, rgb in engine.render(controls, settings, reporter, held, cancel=cancel):
        frame = controls.frame_numbers[index]
        scene_rgb = controls.to_scene(rgb)  # undo the fit-and-pad exactly
        written.append(save_frame(out_dir, frame, scene_rgb, (bundle.width, bundle.height)))
        reporter.emit({"type": Event.FRAME, "frame": frame, "index": index})
        reporter.stage(Stage.SAVING, len(written), total)
        cancel.check()  # after saving: a frame the engine made is kept
    return written
