"""GET /v1/health: is the server up, what does it run on, and what will it accept.

`status` is "degraded" (with the reasons in `degraded`, e.g. "disk") while submits would be
refused for lack of room. A named client (serve --clients) sees nothing about the others:
its own jobs' counts, and no folders, resident models or workers (the admin token sees all).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from storyshade import __version__
from storyshade.server.config import ServerConfig
from storyshade.server.jobs import JobStore
from storyshade.server.schemas import ERRORS, Health
from storyshade.wire.states import JobState

API_VERSION = 1


def health_router(config: ServerConfig, store: JobStore, device: str) -> APIRouter:
    api = APIRouter()

    @api.get("/v1/health", response_model=Health, responses=ERRORS)
    def health(request: Request) -> dict[str, Any]:
        """Is the server up, what does it run on, and what will it accept."""
        client = getattr(request.state, "client", None)
        counts = {s.value: 0 for s in JobState}
        for job in list(store.jobs.values()):
            if client is None or job.owner == client:
                counts[job.state] = counts.get(job.state, 0) + 1
        degraded = ["disk"] if store.disk.low() else []
        out: dict[str, Any] = {
            "status": "degraded" if degraded else "ok",
            "degraded": degraded,
            "version": __version__,
            "api": API_VERSION,
            "device": device,
            "devices": list(store.devices) if store.devices is not None else None,
            "auth": config.needs_auth,
            "limits": {
                "max_upload_bytes": config.max_upload_bytes,
                "max_frames": config.max_frames,
                "max_resolution": config.max_resolution,
            },
            "jobs": counts,
        }
        if client is not None:  # how many model folders, never where they are
            return {**out, "model_roots": ["<models>"] * len(config.model_roots)}
        return {
            **out,
            "models": store.models.stats(),
            "model_roots": [str(r) for r in config.model_roots],
            "workers": store.runner.stats() if store.runner else None,
            "worker_restarts": store.worker_restarts,
            "disk": {"free_bytes": store.disk.free(), "min_free_bytes": store.disk.min_free},
        }

    return api
