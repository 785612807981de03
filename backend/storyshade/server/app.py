"""FastAPI application: the versioned wire protocol (see docs/wire.md)."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Header, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse

from storyshade import __version__
from storyshade.errors import NotFound, StoryShadeError
from storyshade.models.loader import model_key, pick_device
from storyshade.presets import resolve
from storyshade.server.jobs import TERMINAL, JobStore
from storyshade.server.upload import unpack_bundle

API_VERSION = 1


@dataclass
class ServerConfig:
    data_dir: Path
    model_roots: list[Path] = field(default_factory=list)
    max_upload_bytes: int = 2 << 30
    token: str | None = None


def _error(exc: StoryShadeError) -> JSONResponse:
    return JSONResponse(exc.to_json(), status_code=exc.status)


def create_app(config: ServerConfig) -> FastAPI:
    app = FastAPI(title="StoryShade", version=__version__)
    store = JobStore(config.data_dir, config.model_roots)
    app.state.store = store

    @app.exception_handler(StoryShadeError)
    async def _user_error(_req: Request, exc: StoryShadeError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_req: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "bad request"}
        where = ".".join(str(p) for p in err.get("loc", ()))
        return JSONResponse(
            {"error": err.get("msg", "bad request"), "fix": "see docs/wire.md", "field": where},
            status_code=422,
        )

    @app.get("/v1/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "api": API_VERSION,
            "device": pick_device(),
            "model_roots": [str(r) for r in config.model_roots],
            "jobs": {
                s: sum(j.state == s for j in store.jobs.values()) for s in ("queued", "running")
            },
        }

    @app.post("/v1/jobs", status_code=201)
    def submit(
        bundle: Annotated[UploadFile, File(description="the bundle folder as a zip")],
        settings: Annotated[str, Form(description="JSON: {preset, ...setting overrides}")] = "{}",
    ) -> dict[str, Any]:
        try:
            raw = json.loads(settings)
        except ValueError as exc:
            raise StoryShadeError(f"settings is not JSON ({exc})", field="settings") from None
        if not isinstance(raw, dict):
            raise StoryShadeError("settings must be a JSON object", field="settings")
        preset = raw.pop("preset", None)
        resolved = resolve(preset, raw)
        if resolved.engine == "animatediff":
            model_key(config.model_roots, resolved)  # missing models fail now, not later
        job_id = store.new_id()
        job_dir = store.job_dir(job_id)
        try:
            bundle_dir = unpack_bundle(bundle.file, job_dir / "bundle", config.max_upload_bytes)
            if bundle_dir != job_dir / "bundle":
                for item in bundle_dir.iterdir():
                    item.rename(job_dir / "bundle" / item.name)
            job = store.submit(job_dir / "bundle", job_dir, job_id, resolved)
        except StoryShadeError:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise
        return {"id": job.id, "state": job.state, "frames": job.frame_numbers}

    @app.get("/v1/jobs")
    def list_jobs() -> dict[str, Any]:
        return {"jobs": [j.public() for j in store.jobs.values()]}

    @app.get("/v1/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        return store.get(job_id).public()

    @app.delete("/v1/jobs/{job_id}")
    def cancel(job_id: str) -> dict[str, Any]:
        return store.cancel(job_id).public()

    @app.get("/v1/jobs/{job_id}/frames/{frame}")
    def frame(job_id: str, frame: int) -> FileResponse:
        job = store.get(job_id)
        path = store.job_dir(job_id) / "frames" / f"{frame:04d}.png"
        if frame not in job.frame_numbers:
            raise NotFound(
                f"frame {frame} is not in this shot ({job.frame_numbers[0]}..{job.frame_numbers[-1]})",
                field="frame",
            )
        if not path.exists():
            raise NotFound(
                f"frame {frame} is not rendered yet (job is {job.state})",
                "wait for its 'frame' event",
                field="frame",
            )
        return FileResponse(path, media_type="image/png")

    @app.get("/v1/jobs/{job_id}/events")
    async def events(
        job_id: str, last_event_id: Annotated[str | None, Header()] = None
    ) -> StreamingResponse:
        store.get(job_id)
        start = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0

        async def stream():
            last = start
            while True:
                batch = await asyncio.to_thread(store.events_after, job_id, last, 10.0)
                if not batch:
                    yield ": keep-alive\n\n"
                for event in batch:
                    last = event["id"]
                    yield f"id: {last}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
                if store.jobs[job_id].state in TERMINAL and last >= len(store.events[job_id]):
                    return

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app
