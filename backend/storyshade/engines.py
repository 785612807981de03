"""The engine registry: every engine by name, and what each declares it can do.

This is the only place engine names are listed or compared. Each engine is one module whose
engine class carries `capabilities`; submit-time checks, the CLI, the readiness check,
`presets show` and docs/engine.md's tables ask the declaration, never the name. Adding an
engine is its module, one line in ENGINES, and its docs.

Engine modules are imported here by name (importlib), so they must stay light at import
(no torch or diffusers at module level): a submit reads capabilities without loading the
model stack.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from storyshade.declare import FEATURES, SHOT, declarations, is_neutral
from storyshade.errors import StoryShadeError

ENGINES: dict[str, str] = {
    "animatediff": "storyshade.engine.windowed:WindowedAnimateDiffEngine",
    "animatediff-stock": "storyshade.engine.animatediff:StockAnimateDiffEngine",
    "preview": "storyshade.engine.preview:PreviewEngine",
    "wan-vace": "storyshade.engine.wan_vace:WanVaceEngine",
    "wan-vace-stock": "storyshade.engine.wan_stock:StockWanVaceEngine",
}
DEFAULT_ENGINE = "animatediff"


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do. Settings are matched to it through their declared feature
    (declare.Declared.feature): a field whose feature it `reads` acts; one it `ignores` is
    accepted and documented as leaving the frames alone (a model-free draft); any other
    field must keep a neutral value or the job is refused naming it.

    summary: one line for docs and `presets show`.
    looks: per-object looks (the shot's regions) steer the frames.
    look_references: a reference image can act inside one look only.
    held_frames: re-shading a range of a take (held frames steer their neighbours).
    control_roles: the control roles it can steer with.
    needs_models: it loads model files (resolved and checked at submit).
    any_length: windows: a shot of any length runs in the memory of one window; otherwise
        its longest shot is checked per job (`check`).
    """

    summary: str
    reads: frozenset[str]
    ignores: frozenset[str] = frozenset()
    looks: bool = False
    look_references: bool = False
    held_frames: bool = False
    control_roles: frozenset[str] = field(default_factory=frozenset)
    needs_models: bool = True
    any_length: bool = True

    def honours(self, feature: str) -> bool:
        return feature == SHOT or feature in self.reads


@dataclass(frozen=True)
class Shot:
    """The facts about a job's shot that engines differ on, known before any work."""

    frames: int
    looks: tuple[str, ...] = ()  # the names of its looks (regions)
    held: bool = False  # frames of an earlier take are kept (a range re-shade)

    @classmethod
    def of(cls, bundle: Any) -> Shot:
        """From a validated bundle (storyshade.bundle.Bundle)."""
        looks = tuple(r.name for r in bundle.shot.regions)
        return cls(len(bundle), looks, bool(bundle.held()))


def names() -> list[str]:
    return list(ENGINES)


@cache
def engine_class(name: str) -> Any:
    if name not in ENGINES:
        raise StoryShadeError(
            f"unknown engine '{name}'", f"use one of: {', '.join(ENGINES)}", field="settings.engine"
        )
    module, cls = ENGINES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def capabilities(name: str) -> Capabilities:
    return engine_class(name).capabilities


def readers(feature: str) -> list[str]:
    """Engines that honour `feature`, for the fix a refusal offers."""
    return [n for n in ENGINES if capabilities(n).honours(feature)]


def _refuse(engine: str, where: str, feature: str, default: Any) -> StoryShadeError:
    others = [n for n in readers(feature) if n != engine]
    instead = f"use engine {', '.join(repr(o) for o in others)} for it, or " if others else ""
    what = FEATURES.get(feature, f"use '{where}'")
    return StoryShadeError(
        f"engine '{engine}' cannot {what} ({where} is set, and would be ignored)",
        f"{instead}leave {where} at {default!r}",
        field=f"settings.{where}",
    )


def _check_fields(engine: str, caps: Capabilities, model: BaseModel, prefix: str) -> None:
    cls = type(model)
    for name, decl in declarations(cls).items():
        if caps.honours(decl.feature) or decl.feature in caps.ignores:
            continue
        value = getattr(model, name)
        if not is_neutral(cls, name, value, model):
            default = cls.model_fields[name].get_default(call_default_factory=True)
            if isinstance(default, BaseModel | list | dict):
                default = None if not default else default
            raise _refuse(engine, f"{prefix}{name}", decl.feature, default)


def check_settings(settings: Any) -> None:
    """Every setting the engine would not honour is refused, naming it: a 400 at submit,
    CLI exit 2. Torch-free and model-free (what needs files is `check_job`)."""
    caps = capabilities(settings.engine)
    _check_fields(settings.engine, caps, settings, "")
    if "controls" in caps.ignores:
        return
    for role, control in settings.controls.items():
        if caps.control_roles and role not in caps.control_roles:
            raise StoryShadeError(
                f"engine '{settings.engine}' cannot steer with a '{role}' control",
                f"use one of {sorted(caps.control_roles)}, or drop controls.{role}",
                field=f"settings.controls.{role}",
            )
        _check_fields(settings.engine, caps, control, f"controls.{role}.")


def check_job(settings: Any, roots: list[Path], shot: Shot | None = None) -> None:
    """Settings (and, once the bundle is known, its shot) against the engine's declaration,
    then the engine's own `check(settings, roots, shot)`: limits read from model files,
    facts of this machine. Without a shot only what the settings alone decide is checked,
    so a submit can refuse before its upload is unpacked."""
    check_settings(settings)
    caps = capabilities(settings.engine)
    engine = settings.engine
    if shot is not None:
        if shot.looks and not caps.looks:
            raise StoryShadeError(
                f"engine '{engine}' cannot shade per-object looks (the shot has some)",
                f"use engine {_or(readers_of('looks'))}, or export without looks",
                field="settings.engine",
            )
        if shot.held and not caps.held_frames:
            raise StoryShadeError(
                f"engine '{engine}' cannot re-shade part of a take (held frames)",
                f"use engine {_or(readers_of('held_frames'))} to re-shade a frame range",
                field="settings.engine",
            )
    if caps.honours("references") and not caps.look_references:
        for i, ref in enumerate(settings.references):
            if ref.look is not None:
                raise StoryShadeError(
                    f"engine '{engine}' cannot confine a reference image to one look "
                    f"(references.{i} names look '{ref.look}')",
                    f"use engine {_or(readers_of('look_references'))}, or drop its look",
                    field=f"settings.references.{i}.look",
                )
    own = getattr(engine_class(engine), "check", None)
    if own is not None:
        own(settings, roots, shot)


def readers_of(flag: str) -> list[str]:
    """Engines whose boolean capability `flag` is set."""
    return [n for n in ENGINES if getattr(capabilities(n), flag)]


def _or(options: list[str]) -> str:
    return " or ".join(f"'{o}'" for o in options) or "(none here)"
