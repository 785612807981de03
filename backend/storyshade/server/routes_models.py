"""The models resource: what the server's models folders hold, what each preset still
lacks, and `POST /v1/models/pull` to download it (the administrator only).

A pull is a job (server/pulls.py): its record, events and cancel are the job routes'. The
answers name models and folders relative to the models root, never the server's paths.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, Field

from storyshade.errors import StoryShadeError
from storyshade.server.pulls import PullJobs, dry_run
from storyshade.server.schemas import ERRORS, JobOut, ModelsOut, PullPlan


class Forbidden(StoryShadeError):
    status = 403


class PullRequest(BaseModel):
    names: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        min_length=1,
        max_length=20,
        description="presets (comma-separated within one name, e.g. 'anime-cel,standard') or "
        "model names of the sources table, as `storyshade models pull NAME...`",
    )
    variant: Literal["fp16", "fp32"] = Field("fp16", description="which copy of the weights")
    token: str | None = Field(
        None, max_length=500, description="hub token for gated repositories (kept in memory only)"
    )
    dry_run: bool = Field(False, description="answer the files and bytes, download nothing")
    tag: str = Field("", max_length=200, description="free text to find the job again by")


def _admin_only(request: Request) -> None:
    if getattr(request.state, "client", None) is not None:
        raise Forbidden(
            "only the server's administrator can download models",
            "ask whoever runs the server to pull them (with the admin token, or "
            "`storyshade models pull` on the server)",
            field="Authorization",
        )


def _check_can_pull(roots: list[Path]) -> None:
    from storyshade.models.hub import offline_switch

    if not roots:
        raise StoryShadeError(
            "this server has no models folder to pull into",
            "start it with --models DIR (the first folder receives pulls)",
            field="models",
        )
    # The server sets HF_HUB_OFFLINE itself so that rendering never fetches; only
    # StoryShade's own switch stops an asked-for pull here.
    if offline_switch(("STORYSHADE_OFFLINE",)):
        raise Forbidden(
            "this server never downloads (STORYSHADE_OFFLINE=1)",
            "start it without STORYSHADE_OFFLINE=1, or copy models into its models folder",
            field="STORYSHADE_OFFLINE",
        )


def lacks(roots: list[Path]) -> list[dict[str, Any]]:
    """Each preset (over the default layers) and the models it names that are not here."""
    from storyshade.models.check import needs_of
    from storyshade.models.locate import find
    from storyshade.models.sources import source_for
    from storyshade.presets import resolve, scan

    present: dict[tuple[str, str], bool] = {}

    def here(kind: str, name: str) -> bool:
        if (kind, name) not in present:
            try:
                find(roots, kind, name)
                present[(kind, name)] = True
            except StoryShadeError:
                present[(kind, name)] = False
        return present[(kind, name)]

    out = []
    presets, _broken = scan()
    for name, preset in sorted(presets.items(), key=lambda kv: (kv[1].layer, kv[0])):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                needs = needs_of(resolve(name))
        except StoryShadeError:
            continue
        missing = [
            {
                "role": n.role,
                "name": n.name,
                "kind": n.kind,
                "pullable": source_for(n.name) is not None,
            }
            for n in needs
            if not here(n.kind, n.name)
        ]
        out.append({"name": name, "layer": preset.layer, "complete": not missing, "lacks": missing})
    return out


def models_router(roots: list[Path], pulls: PullJobs) -> APIRouter:
    api = APIRouter()

    @api.get("/v1/models", response_model=ModelsOut, responses=ERRORS)
    def list_models() -> dict[str, Any]:
        """The models found (by name, kind and layout) and, for every preset over the
        default layers, the models it names that this server lacks ("pullable": the
        sources table knows where to download it)."""
        from storyshade.models.discover import discover

        found = [
            {
                "kind": f.kind,
                "name": f.repo_id if f.layout == "hf-cache" and f.repo_id else f.name,
                "layout": f.layout,
                "refused": f.refused,
            }
            for f in discover(roots)
            if f.kind != "unknown" or f.refused
        ]
        return {"models": found, "presets": lacks(roots), "pull_folder": bool(roots)}

    @api.post("/v1/models/pull", status_code=201, response_model=None, responses={
        **ERRORS, 201: {"model": JobOut, "description": "the pull job (kind 'pull')"},
        200: {"model": PullPlan, "description": "dry_run: the files, bytes and free space"},
    })  # fmt: skip
    def pull(request: Request, body: Annotated[PullRequest, Body()]) -> Any:
        """Download what the named presets or models need into the server's first models
        folder, as a job: follow it on GET /v1/jobs/{id}/events, cancel it with DELETE
        /v1/jobs/{id}. With dry_run, answer the plan now (200) and download nothing."""
        from fastapi.responses import JSONResponse

        from storyshade.models.pull import wanted

        _admin_only(request)
        _check_can_pull(roots)
        wanted(body.names)  # an unknown name is a 400 now, not a failed job later
        if body.dry_run:
            return JSONResponse(dry_run(body.names, body.variant, roots, body.token))
        job = pulls.start(body.names, body.variant, body.token, body.tag)
        return JSONResponse(pulls.public(job), status_code=201)

    return api
