"""FastAPI application: the versioned wire protocol (see docs/wire.md).

Every answer that is not a success is JSON {error, fix, field}: user mistakes are 4xx naming
the input, and even a bug is a JSON 500 without a traceback (the traceback goes to the log).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from storyshade import __version__
from storyshade.cache import StageCache
from storyshade.errors import StoryShadeError
from storyshade.models.loader import pick_device
from storyshade.models.resident import ResidentModels
from storyshade.server.config import ServerConfig
from storyshade.server.guard import Guard
from storyshade.server.jobs import JobStore
from storyshade.server.pulls import PullJobs
from storyshade.server.readiness import router as readiness_router
from storyshade.server.redact import Redactor
from storyshade.server.review_page import review_router
from storyshade.server.routes_health import API_VERSION, health_router
from storyshade.server.routes_jobs import jobs_router
from storyshade.server.routes_models import models_router
from storyshade.server.upload import Limits

__all__ = ["API_VERSION", "ServerConfig", "create_app"]

log = logging.getLogger("storyshade.server")


def _json_error(status: int, problem: str, fix: str = "", field: str | None = None):
    return JSONResponse({"error": problem, "fix": fix, "field": field}, status_code=status)


def _install_error_handlers(app: FastAPI, redact: Redactor) -> None:
    @app.exception_handler(StoryShadeError)
    async def _user_error(_req: Request, exc: StoryShadeError) -> JSONResponse:
        return JSONResponse(redact.error(exc.to_json()), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        err = errors[0] if errors else {"loc": (), "msg": "bad request"}
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "path", "query", "header"):
            loc = loc[1:]
        return _json_error(
            422, str(err.get("msg", "bad request")), "see docs/wire.md", ".".join(loc) or None
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # raised only by the multipart parser: the body is bad
            return _json_error(
                400,
                str(exc.detail),
                "send multipart/form-data with a 'bundle' file and a 'settings' field",
                "body",
            )
        fix = {404: "see docs/wire.md for the endpoints", 405: "see docs/wire.md"}
        return _json_error(exc.status_code, str(exc.detail), fix.get(exc.status_code, ""), None)

    @app.exception_handler(Exception)
    async def _bug(_req: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error: %r", exc)
        return _json_error(500, "internal server error", "see the server log", None)


def _openapi(app: FastAPI, config: ServerConfig):
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        if config.needs_auth:
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
            schema["security"] = [{"bearer": []}]
        app.openapi_schema = schema
        return schema

    return build


def create_app(config: ServerConfig, start_worker: bool = True) -> FastAPI:
    app = FastAPI(
        title="StoryShade",
        version=__version__,
        description="Shading server: shot bundles in, frames out. Wire protocol: docs/wire.md",
    )
    models = ResidentModels(config.model_memory_bytes)
    stages = (
        StageCache(config.data_dir / "cache", config.cache_bytes) if config.cache_bytes else None
    )
    if stages:
        stages.clear_partial()
    runner = None
    if config.ray:  # Ray workers render; this process keeps the records (docs/cluster.md)
        from storyshade.cluster.dispatch import RayRunner

        runner = RayRunner.start(
            config.ray, config.ray_workers, config.model_roots, stages, config.model_memory_bytes
        )
    store = JobStore(
        config.data_dir, config.model_roots, models, stages, start=start_worker, runner=runner
    )
    limits = Limits(config.max_upload_bytes, config.max_frames, config.max_resolution)
    app.state.store = store
    pulls = PullJobs(config.data_dir, config.model_roots, store.redact, start=start_worker)
    app.state.pulls = pulls
    device = pick_device()
    _install_error_handlers(app, store.redact)
    app.openapi = _openapi(app, config)  # type: ignore[method-assign]
    app.add_middleware(Guard, config=config)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Last-Event-ID", "Content-Type"],
        )

    # one router per resource; this function only builds the services and wires them
    app.include_router(health_router(config, store, device))
    app.include_router(readiness_router(config.model_roots))
    app.include_router(review_router())
    app.include_router(models_router(config.model_roots, pulls))
    app.include_router(jobs_router(config, store, limits, pulls))
    return app
