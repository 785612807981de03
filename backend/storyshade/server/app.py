"""FastAPI application: the versioned wire protocol (see docs/wire.md).

Every answer that is not a success is JSON {error, fix, field}: user mistakes are 4xx naming
the input, and even a bug is a JSON 500 without a traceback (the traceback goes to the log).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from storyshade import __version__
from storyshade.cache import StageCache
from storyshade.errors import NotFound, StoryShadeError
from storyshade.models.loader import pick_device
from storyshade.models.resident import ResidentModels
from storyshade.server import review_page
from storyshade.server.config import ServerConfig
from storyshade.server.guard import Guard
from storyshade.server.jobs import TERMINAL, JobStore
from storyshade.server.readiness import router as readiness_router
from storyshade.server.redact import Redactor
from storyshade.server.schemas import ERRORS, Health, JobList, JobOut, State, Submitted
from storyshade.server.submit import accept_job
from storyshade.server.upload import Limits

__all__ = ["API_VERSION", "ServerConfig", "create_app"]

API_VERSION = 1
KEEPALIVE_S = 15.0
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


def _client(request: Request) -> str | None:
    """The named client making the request (serve --clients), None for the admin token or
    a server without named clients."""
    return getattr(request.state, "client", None)


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

    app.include_router(readiness_router(config.model_roots))

    @app.get("/v1/health", response_model=Health, responses=ERRORS)
    def health() -> dict[str, Any]:
        """Is the server up, what does it run on, and what will it accept."""
        counts = {s: 0 for s in ("queued", "running", *TERMINAL)}
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
            "models": models.stats(),
            "model_roots": [str(r) for r in config.model_roots],
            "workers": runner.stats() if runner else None,
        }

    @app.post("/v1/jobs", status_code=201, response_model=Submitted, responses=ERRORS)
    def submit(
        request: Request,
        bundle: Annotated[UploadFile, File(description="the bundle folder as a zip")],
        settings: Annotated[
            str, Form(description='JSON object: {"preset": NAME, ...setting overrides}')
        ] = "{}",
        priority: Annotated[
            int, Form(ge=-100, le=100, description="higher runs first; equal: first come")
        ] = 0,
        tag: Annotated[
            str, Form(max_length=200, description="free text to find the job again by")
        ] = "",
    ) -> dict[str, Any]:
        """Queue a shot. The bundle and settings are fully validated before this returns."""
        job = accept_job(
            store,
            bundle.file,
            settings,
            limits,
            max_resolution=config.max_resolution,
            priority=priority,
            tag=tag,
            owner=_client(request),
        )
        return {**store.public(job), "frames": job.frame_numbers}

    @app.get(review_page.PATH, response_class=HTMLResponse, include_in_schema=False)
    def review() -> HTMLResponse:
        """The finished takes of a sequence, playing side by side (docs/server.md)."""
        return HTMLResponse(review_page.PAGE)

    @app.get("/v1/jobs", response_model=JobList, responses=ERRORS)
    def list_jobs(
        request: Request,
        state: Annotated[State | None, Query(description="only jobs in this state")] = None,
        tag: Annotated[str | None, Query(max_length=200)] = None,
    ) -> dict[str, Any]:
        """Every job, oldest first, with its state and queue position."""
        return {"jobs": store.list(state, tag, _client(request))}

    @app.get("/v1/jobs/{job_id}", response_model=JobOut, responses=ERRORS)
    def get_job(request: Request, job_id: str) -> dict[str, Any]:
        return store.public(store.get(job_id, _client(request)))

    @app.delete("/v1/jobs/{job_id}", response_model=JobOut, responses=ERRORS)
    def cancel(request: Request, job_id: str) -> dict[str, Any]:
        """Cancel: a queued job at once, a running one at its next step. Idempotent; a
        finished job is returned unchanged. Frames already written are kept."""
        store.get(job_id, _client(request))  # a named client cancels only its own jobs
        return store.public(store.cancel(job_id))

    @app.get(
        "/v1/jobs/{job_id}/frames/{frame}",
        response_class=FileResponse,
        responses={**ERRORS, 200: {"content": {"image/png": {}}, "description": "PNG frame"}},
    )
    def frame(request: Request, job_id: str, frame: int) -> FileResponse:
        """One finished frame as PNG, by scene frame number."""
        job = store.get(job_id, _client(request))
        if frame not in job.frame_numbers:
            raise NotFound(
                f"frame {frame} is not in this shot "
                f"({job.frame_numbers[0]}..{job.frame_numbers[-1]})",
                field="frame",
            )
        path = store.frame_path(job_id, frame)
        if not path.is_file():
            raise NotFound(
                f"frame {frame} is not rendered yet (job is {job.state})",
                "wait for its 'frame' event",
                field="frame",
            )
        return FileResponse(path, media_type="image/png")

    @app.get(
        "/v1/jobs/{job_id}/events",
        response_class=StreamingResponse,
        responses={
            **ERRORS,
            200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
        },
    )
    async def events(
        request: Request,
        job_id: str,
        last_event_id: Annotated[str | None, Header(max_length=32)] = None,
        after: Annotated[int | None, Query(ge=0, description="as Last-Event-ID")] = None,
    ) -> StreamingResponse:
        """The job's events from the start, or after Last-Event-ID; ends after the final
        state event. Disconnecting never cancels the job."""
        job = store.get(job_id, _client(request))
        start = after or 0
        if last_event_id and last_event_id.strip().isdigit():
            start = int(last_event_id.strip())
        return StreamingResponse(
            _stream(store, job.id, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app


async def _stream(store: JobStore, job_id: str, last: int) -> AsyncIterator[str]:
    """Replay, then follow, one job's event log; a keep-alive comment when quiet."""
    log_ = store.logs[job_id]
    waiter = log_.subscribe()
    try:
        yield "retry: 2000\n\n"
        while True:
            waiter.clear()
            terminal = store.jobs[job_id].state in TERMINAL  # read before the events
            for event in log_.after(last):
                last = event["id"]
                yield f"id: {last}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
            if terminal:
                return
            try:
                await asyncio.wait_for(waiter.wait(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
    finally:
        log_.unsubscribe(waiter)
