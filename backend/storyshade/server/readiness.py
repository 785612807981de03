"""GET /v1/readiness: can this server shade with these presets now, and if not, what is
missing and which quality would work instead.

The add-on asks before it exports, so a shot is not rendered and uploaded only to fail on
a missing checkpoint. The check is `storyshade models check` (models.check.check_preset)
against the server's own model roots; answers name models, never the server's folders.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query

from storyshade.models.check import Report, check_preset
from storyshade.presets import LAYERS, choose, parse_names, resolve, scan
from storyshade.server.redact import Redactor
from storyshade.server.schemas import ERRORS

QUALITY = "quality"


def _scrub(text: str, roots: list[Path]) -> str:
    """Model roots out of a message: the client needs the model's name, not our paths."""
    return Redactor({"<models>": list(roots)}).text(text)


def _get_hint(name: str) -> str:
    from storyshade.models.sources import source_for

    src = source_for(name)
    return src.url() if src is not None else ""


def _check(roots: list[Path], names: list[str]) -> Report:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # notes on odd combinations are not readiness
        return check_preset(roots, resolve(names))


def _works_now(roots: list[Path], names: list[str]) -> list[str]:
    """Every quality preset that is ready with the other layers as given, by name."""
    presets, _broken = scan()
    others = [n for n in names if n in presets and presets[n].layer != QUALITY]
    out = []
    for quality in sorted(n for n, p in presets.items() if p.layer == QUALITY):
        try:
            if _check(roots, [*others, quality]).ok:
                out.append(quality)
        except Exception:  # a broken preset file is not a reason to fail the answer
            continue
    return out


def readiness(roots: list[Path], spec: str) -> dict[str, Any]:
    """The answer for `spec` (comma-separated preset names, as a job's `preset`)."""
    names = parse_names(spec)
    chosen = choose(names)  # an unknown name is a 400 naming it, as on submit
    report = _check(roots, names)
    missing = [
        {
            "role": n.role,
            "name": n.name,
            "problem": _scrub(n.problem, roots),
            "get": _get_hint(n.name) if "not found" in n.problem else "",
        }
        for n in report.needs
        if not n.path or n.problem
    ]
    problems = [
        {"error": _scrub(p.problem, roots), "fix": _scrub(p.fix, roots)} for p in report.problems
    ]
    works = _works_now(roots, names)
    quality = chosen[QUALITY].name if QUALITY in chosen else ""
    return {
        "preset": ",".join(names),
        "layers": {layer: chosen[layer].name for layer in LAYERS if layer in chosen},
        "quality": quality,
        "ready": report.ok,
        "missing": missing,
        "problems": problems,
        "works_now": works,
        "summary": summary(report.ok, quality, missing, problems, works),
    }


def summary(
    ready: bool, quality: str, missing: list[dict], problems: list[dict], works: list[str]
) -> str:
    """One line a user can act on."""
    if ready:
        return f"'{quality}' is ready" if quality else "ready"
    parts = [f"{m['role']} '{m['name']}'" for m in missing]
    what = f"missing {', '.join(parts)}" if parts else problems[0]["error"]
    instead = (
        f"; works now: {', '.join(works)}" if works else "; no quality works with these models"
    )
    return f"'{quality}' cannot run here: {what}{instead}"


def router(roots: list[Path]) -> APIRouter:
    api = APIRouter()

    @api.get("/v1/readiness", responses=ERRORS)
    def get_readiness(
        preset: Annotated[
            str, Query(max_length=500, description="comma-separated preset names")
        ] = "",
    ) -> dict[str, Any]:
        """Whether the server has the models these presets need, what is missing, and
        which quality presets work now (with the same style, camera and resolution)."""
        return readiness(roots, preset)

    return api
