"""What a preset needs, what is present, what is missing (and where to get it), and
whether what is present fits together: the report behind `storyshade models check`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from storyshade.engines import capabilities, engine_class
from storyshade.errors import ModelError, StoryShadeError
from storyshade.settings import Settings


@dataclass
class Need:
    role: str
    kind: str
    name: str
    path: Path | None = None
    problem: str = ""
    fix: str = ""


@dataclass
class Report:
    needs: list[Need] = field(default_factory=list)
    problems: list[StoryShadeError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(n.path and not n.problem for n in self.needs)

    def text(self) -> str:
        lines = []
        for n in self.needs:
            status = f"ok       {n.path}" if n.path and not n.problem else f"MISSING  {n.problem}"
            lines.append(f"{n.role:22s} {n.name:40s} {status}")
            for i, line in enumerate(n.fix.splitlines()):
                lines.append(f"{'':22s} {'get it: ' if i == 0 else '  '}{line}")
        for p in self.problems:
            lines.append(f"MISMATCH {p.problem}")
            if p.fix:
                lines.append(f"         fix: {p.fix}")
        lines += [f"note: {n}" for n in self.notes]
        lines.append("all models present and compatible" if self.ok else "not ready")
        return "\n".join(lines)


def needs_of(settings: Settings) -> list[Need]:
    """The model files the job's engine will load: those of the features it reads."""
    caps = capabilities(settings.engine)
    if not caps.needs_models:
        return []
    out = [Need("checkpoint", "checkpoint", settings.checkpoint)]
    if caps.honours("motion"):
        out.append(Need("motion adapter", "motion_adapter", settings.motion_adapter))
    if caps.honours("controlnet_models"):
        out += [
            Need(f"controlnet {r}", "controlnet", c.model) for r, c in settings.controls.items()
        ]
    out += [Need("style LoRA", "lora", lo.name) for lo in settings.loras]
    if caps.honours("motion"):
        out += [Need("motion LoRA", "lora", lo.name) for lo in settings.motion_loras]
    if settings.references and caps.honours("ip_adapter"):
        out += [
            Need("ip adapter", "ip_adapter", settings.ip_adapter),
            Need("image encoder", "image_encoder", settings.image_encoder),
        ]
    return out


def _where_to_get(roots: list[Path], kind: str, name: str) -> str:
    from storyshade.models.locate import KIND_DIRS
    from storyshade.models.sources import source_for

    src = source_for(name)
    root = roots[0] if roots else Path("MODELS")
    if src is None:
        return f"not a known download; put it at {root / KIND_DIRS[kind] / name}"
    note = f" ({src.note})" if src.note else ""
    return f"{src.url()}{note}\n$ storyshade models pull {src.name} --models {root}"


def check_preset(roots: list[Path], settings: Settings) -> Report:
    from storyshade.models import compat
    from storyshade.models.ip_adapter import check_adapter_file
    from storyshade.models.locate import check_checkpoint, check_folder_weights, find
    from storyshade.models.lora import lora_file
    from storyshade.presets import notes

    report = Report(notes=notes(settings))
    if not capabilities(settings.engine).needs_models:
        report.notes.append(f"the {settings.engine} engine needs no models")
        return report
    own = getattr(engine_class(settings.engine), "check_models", None)
    if own is not None:  # a model family with checks of its own (the Wan engines)
        return own(roots, settings, report, needs_of(settings), _where_to_get)
    for need in needs_of(settings):
        report.needs.append(need)
        try:
            path = find(roots, need.kind, need.name)
            if need.kind == "checkpoint":
                check_checkpoint(path)
            elif need.kind == "lora":
                path = lora_file(path)
            elif need.kind == "ip_adapter":
                check_adapter_file(path)
            else:
                check_folder_weights(path, need.kind)
            need.path = path
        except ModelError as exc:
            need.problem = exc.problem
            if "not found" in exc.problem:
                need.fix = _where_to_get(roots, need.kind, need.name)
            else:
                need.fix = exc.fix
    if all(n.path for n in report.needs):
        by_role = {n.role: n.path for n in report.needs}
        controls = tuple((r, by_role[f"controlnet {r}"]) for r in settings.controls)
        loras = tuple(
            (n.name, n.path, n.role == "motion LoRA")
            for n in report.needs
            if n.kind == "lora" and n.path
        )
        combo = compat.Combination(
            by_role["checkpoint"], by_role["motion adapter"], controls, loras
        )
        try:
            report.problems = list(compat.problems(combo, settings))
            if settings.references:
                report.problems += _reference_problems(by_role, combo.checkpoint)
            if combo.checkpoint.is_file():
                _check_single_file(roots, combo.checkpoint)
        except ModelError as exc:
            report.problems.append(exc)
    return report


def _reference_problems(by_role: dict, checkpoint: Path) -> list[ModelError]:
    from storyshade.models import ip_adapter
    from storyshade.models.arch import checkpoint_arch

    cross = checkpoint_arch(checkpoint).cross_attention_dim
    return ip_adapter.problems(by_role["ip adapter"], by_role["image encoder"], checkpoint, cross)


def _check_single_file(roots: list[Path], path: Path) -> None:
    from storyshade.models.single_file import checkpoint_config, find_tokenizer

    find_tokenizer(checkpoint_config(path), roots)
