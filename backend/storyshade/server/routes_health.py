"""GET /v1/health: is the server up, what does it run on, and what will it accept."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from storyshade import __version__
from storyshade.server.config import ServerConfig
from storyshade.server.jobs import JobStore
from storyshade.server.schemas import ERRORS, Health
from storyshade.wire.states import JobState

API_VERSION = 1


def health_router(config: ServerConfig, store: JobStore, device: str) -> APIRouter:
    api = APIRouter()

    @api.get("/v1/health", response_model=Health, responses=ERRORS)
    def health() -> dict[str, Any]:
        """Is the server up, what does it run on, and what will it accept."""
        counts = {s.value: 0 for s in JobState}
        for job in list(store.jobs.values()):
            counts[job.state] = counts.get(job.state, 0) + 1
        return {
            "status": "ok",
            "version": __version__,
            "api": API_VERSION,
            "device": device,
            "auth": config.needs_auth,
            "limits": {
                "max_upload_bytes": config.max_upload_bytes,
                "max_frames": config.max_frames,
                "max_resolution": config.max_resolution,
            },
            "jobs": counts,
            "models": store.models.stats(),
            "model_roots": [str(r) for r in config.model_roots],
            "workers": store.runner.stats() if store.runner else None,
        }

    return api
