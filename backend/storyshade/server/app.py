"""FastAPI application: the versioned wire protocol (see docs/wire.md).

Every answer that is not a success is JSON {error, fix, field}: user mistakes are 4xx naming
the input, a full disk is a 507 (even while an upload is being read), and even a bug is a
JSON 500 without a traceback (the traceback goes to the log). Every response carries the
security headers of server/headers.py.
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
from storyshade.models.loader import local_devices, pick_device
from storyshade.models.resident import ResidentModels
from storyshade.server.config import ServerConfig
from storyshade.server.disk import Disk, os_error
from storyshade.server.guard import Guard
from storyshade.server.headers import SecurityHeaders, docs_router
from storyshade.server.jobs import JobStore
from storyshade.server.pulls import PullJobs
from storyshade.server.readiness import router as readiness_router
from storyshade.server.redact import Redactor
from storyshade.server.review_page import review_router
from storyshade.server.routes_health import API_VERSION, health_router
from storyshade.server.routes_jobs import jobs_router
from storyshade.server.routes_models import models_router
from storyshade.server.upload import Limits
from storyshade.settings import Settings

__all__ = ["API_VERSION", "ServerConfig", "create_app"]

log = logging.getLogger("storyshade.server")


def _json_error(status: int, problem: str, fix: str = "", field: str | None = None):
    return JSONResponse({"error": problem, "fix": fix, "field": field}, status_code=status)


def _install_error_handlers(app: FastAPI, redact: Redactor, disk: Disk) -> None:
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
        cause = os_error(exc)
        if exc.status_code == 400 and cause is not None:  # the upload's spool file: our disk
            log.error("reading an upload failed: %s", cause)
            err = disk.error_for(cause)
            return JSONResponse(redact.error(err.to_json()), status_code=err.status)
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
        # The `settings` form field is JSON text: its object's schema, for clients and tests
        settings = Settings.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(settings.pop("$defs", {}))
        components["Settings"] = settings
        if config.needs_auth:
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
            schema["security"] = [{"bearer": []}]
        app.openapi_schema = schema
        return schema

    return build


def _admission(config: ServerConfig, store: JobStore):
    """Whether a submit may start reading its upload: room on the disk, and in its client's
    quota (serve --clients)."""

    def admit(client: str | None) -> tuple[int, str, str, str | None] | None:
        if store.disk.low():
            err = store.disk.below_floor()
            return err.status, store.redact.text(err.problem), err.fix, err.field
        quota = config.quotas.get(client or "")
        if quota:
            used = store.usage(client)
            if used >= quota:
                return (
                    507,
                    f"client {client}'s jobs use {used >> 20} MiB, at its quota of "
                    f"{quota >> 20} MiB",
                    "wait for old jobs to expire, or ask the server's administrator to raise "
                    "quota_mb in the clients file",
                    "quota",
                )
        return None

    return admit


def create_app(config: ServerConfig, start_worker: bool = True) -> FastAPI:
    app = FastAPI(
        title="StoryShade",
        version=__version__,
        description="Shading server: shot bundles in, frames out. Wire protocol: docs/wire.md",
        docs_url=None,  # served by docs_router, under its own Content-Security-Policy
        redoc_url=None,
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
    disk = Disk(config.data_dir, config.min_free_bytes)
    store = JobStore(
        config.data_dir,
        config.model_roots,
        models,
        stages,
        start=start_worker,
        runner=runner,
        disk=disk,
        keep_seconds=config.keep_seconds,
        devices=None if config.ray else local_devices(),  # Ray workers have their own
    )
    limits = Limits(config.max_upload_bytes, config.max_frames, config.max_resolution)
    app.state.store = store
    pulls = PullJobs(config.data_dir, config.model_roots, store.redact, start=start_worker)
    app.state.pulls = pulls
    device = pick_device()
    _install_error_handlers(app, store.redact, disk)
    app.openapi = _openapi(app, config)  # type: ignore[method-assign]
    app.add_middleware(Guard, config=config, admit=_admission(config, store))
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Last-Event-ID", "Content-Type"],
        )
    app.add_middleware(SecurityHeaders)  # outermost: every answer, refusals included

    # one router per resource; this function only builds the services and wires them
    app.include_router(health_router(config, store, device))
    app.include_router(readiness_router(config.model_roots))
    app.include_router(review_router())
    app.include_router(docs_router(app.title, app.openapi_url or "/openapi.json"))
    app.include_router(models_router(config.model_roots, pulls))
    app.include_router(jobs_router(config, store, limits, pulls))
    return app
