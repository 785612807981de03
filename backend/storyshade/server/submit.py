"""POST /v1/jobs: settings and bundle checked in full before anything is queued."""

from __future__ import annotations

import errno
import json
import re
import shutil
from pathlib import Path
from typing import Any, BinaryIO

from storyshade.engine.animatediff import check_held_engine, check_stock_shot
from storyshade.engine.color_match import check_color_match_engine
from storyshade.engine.levers import check_compile
from storyshade.engine.references import check_reference_looks, check_references_engine
from storyshade.engine.regions import check_looks_engine
from storyshade.engine.wan_checks import check_wan_job
from storyshade.errors import ModelError, StoryShadeError
from storyshade.job_input import needs_models
from storyshade.models.loader import ModelKey, model_key
from storyshade.presets import resolve
from storyshade.references import check_references, image_fields, resolve_paths
from storyshade.server.jobs import Job, JobStore
from storyshade.server.upload import Limits, unpack_bundle
from storyshade.settings import Settings, hires_size
from storyshade.wire import manifest
from storyshade.wire.layout import BUNDLE_IMAGE

# Model names are folder or file names inside the models root, never paths.
MODEL_NAME = re.compile(r"[\w][\w .()+\-\[\]]{0,199}")


def check_request_references(overrides: dict[str, Any]) -> None:
    """Reference images a request names are files of its bundle (a preset's may be
    anywhere on the server: presets are the server's own files)."""
    refs = overrides.get("references")
    named = []
    if isinstance(refs, list):
        named = [(f"settings.references.{i}.image", ref) for i, ref in enumerate(refs)]
    named.append(("settings.color_match.image", overrides.get("color_match")))
    for field, ref in named:
        image = ref.get("image") if isinstance(ref, dict) else None
        if isinstance(image, str) and not (BUNDLE_IMAGE.fullmatch(image) and ".." not in image):
            raise StoryShadeError(
                f"reference image '{image[:80]}' is not a path inside the bundle",
                "put the image in the bundle zip beside shot.json and name it relative to it "
                '(e.g. "references/girl.png")',
                field=field,
            )


class OutOfDisk(StoryShadeError):
    status = 507


def parse_settings(text: str) -> tuple[str | None, dict[str, Any]]:
    """The settings form field: a JSON object with an optional "preset" (name or names)."""
    try:
        raw = json.loads(text, parse_constant=manifest.reject_constant)
    except (ValueError, RecursionError) as exc:
        raise StoryShadeError(
            f"settings is not valid JSON ({str(exc)[:200]})",
            'send a JSON object, e.g. {"preset": "tiny", "prompt": "a forest"}',
            field="settings",
        ) from None
    if not isinstance(raw, dict):
        raise StoryShadeError(
            "settings must be a JSON object", 'e.g. {"preset": "tiny"}', field="settings"
        )
    preset = raw.pop("preset", None)
    if isinstance(preset, list) and all(isinstance(p, str) for p in preset):
        preset = ",".join(preset)
    if preset is not None and not isinstance(preset, str):
        raise StoryShadeError(
            "preset must be a name or a list of names",
            "see `storyshade presets list`",
            field="settings.preset",
        )
    return preset, raw


def check_model_names(settings: Settings) -> None:
    """Names that could escape the models folder (or are not names at all) never reach it."""
    named = [
        ("settings.checkpoint", settings.checkpoint),
        ("settings.motion_adapter", settings.motion_adapter),
        *((f"settings.controls.{role}.model", c.model) for role, c in settings.controls.items()),
        *((f"settings.loras.{i}.name", lora.name) for i, lora in enumerate(settings.loras)),
    ]
    for field, name in named:
        if not MODEL_NAME.fullmatch(name) or ".." in name:
            raise ModelError(
                f"'{name[:80]}' is not a model name",
                "name a folder or .safetensors file inside the models root, without a path",
                field=field,
            )


# What preset merging may raise on a value of the wrong shape (e.g. a LoRA without a name)
# before validation gets to say so; the request is at fault, so it is a 400, never a 500.
MERGE_ERRORS = (TypeError, KeyError, ValueError, AttributeError, IndexError, RecursionError)


def merge_settings(preset: str | None, overrides: dict[str, Any]) -> Settings:
    """Presets + overrides → Settings; a malformed override is a 400 naming its key."""
    try:
        return resolve(preset, overrides)
    except StoryShadeError:
        raise
    except MERGE_ERRORS as exc:
        field = "settings"
        for key, value in overrides.items():  # find the culprit, for the error's field
            try:
                resolve(preset, {key: value})
            except StoryShadeError:
                continue
            except MERGE_ERRORS:
                field = f"settings.{key}"
                break
        raise StoryShadeError(
            f"a value has the wrong shape ({type(exc).__name__}: {str(exc)[:120]})",
            'check it against docs/presets.md; e.g. each LoRA is {"name": ..., "weight": ...}',
            field=field,
        ) from None


def resolve_settings(
    text: str, roots: list[Path], max_resolution: int
) -> tuple[str | None, Settings, ModelKey | None]:
    """The request's preset name, its settings and their resolved models (None for the
    model-free preview): the job carries these, so nothing downstream resolves them again.

    Nothing here imports an engine (diffusers takes seconds to import): the engine name is
    checked by Settings, so the first submit answers at once and the import happens when
    the job starts."""
    preset, overrides = parse_settings(text)
    check_request_references(overrides)
    settings = merge_settings(preset, overrides)
    for side in ("width", "height"):
        if getattr(settings, side) > max_resolution:
            raise StoryShadeError(
                f"{side} {getattr(settings, side)} is over the server limit of {max_resolution}",
                "choose a smaller resolution preset",
                field=f"settings.{side}",
            )
    if settings.hires:
        size = hires_size(settings.width, settings.height, settings.hires.scale)
        if max(size) > max_resolution:
            raise StoryShadeError(
                f"the hires pass would be {size[0]}x{size[1]}, over the server limit of "
                f"{max_resolution}",
                "lower settings.hires.scale or the resolution",
                field="settings.hires.scale",
            )
    check_model_names(settings)
    check_compile(settings)  # compile 'on' where it cannot work: a 4xx, not a failed job
    key = model_key(roots, settings) if needs_models(settings) else None  # fail now, not later
    return preset, settings, key


def accept_job(
    store: JobStore,
    fileobj: BinaryIO,
    settings_text: str,
    limits: Limits,
    *,
    max_resolution: int,
    priority: int = 0,
    tag: str = "",
    owner: str | None = None,
) -> Job:
    preset, settings, key = resolve_settings(settings_text, store.roots, max_resolution)
    job_id = store.new_id()
    job_dir = store.job_dir(job_id)
    try:
        job_dir.mkdir(parents=True)
        check_references_engine(settings.engine, bool(settings.references))
        check_color_match_engine(settings.engine, settings.color_match)
        inside = [image for _, image in image_fields(settings) if not Path(image).is_absolute()]
        bundle = unpack_bundle(fileobj, job_dir, limits, inside)
        settings = resolve_paths(settings, bundle.root)
        check_references(settings)  # unreadable or refused images: a 422 naming the file
        check_reference_looks(settings, [r.name for r in bundle.shot.regions])
        check_stock_shot(settings, len(bundle), store.roots)  # a 400 now, not a failed job
        check_looks_engine(settings.engine, bool(bundle.shot.regions))
        check_held_engine(settings.engine, bool(bundle.held()))
        check_wan_job(settings, len(bundle), bool(bundle.held()), bool(bundle.shot.regions))
        return store.submit(
            job_id,
            bundle,
            settings,
            priority=priority,
            tag=tag,
            preset=preset,
            owner=owner,
            models=key,
        )
    except StoryShadeError:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    except OSError as exc:
        shutil.rmtree(job_dir, ignore_errors=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutOfDisk(
                "the server's disk is full", "free space in its data folder", field=None
            ) from None
        raise
