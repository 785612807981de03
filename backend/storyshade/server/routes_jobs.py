"""The jobs resource: submit a shot, list and read jobs, cancel, frames, and the event
stream (docs/wire.md). A named client (serve --clients) sees only its own jobs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import FileResponse, StreamingResponse

from storyshade.errors import NotFound
from storyshade.server.config import ServerConfig
from storyshade.server.jobs import JobStore
from storyshade.server.pulls import PullJobs
from storyshade.server.schemas import ERRORS, JobList, JobOut, State, Submitted
from storyshade.server.submit import accept_job
from storyshade.server.upload import Limits
from storyshade.wire.states import TERMINAL, Event

KEEPALIVE_S = 15.0
FINAL_EVENT_S = 2.0  # the most a stream waits for a final event after the final state


def _client(request: Request) -> str | None:
    """The named client making the request (serve --clients), None for the admin token or
    a server without named clients."""
    return getattr(request.state, "client", None)


def jobs_router(
    config: ServerConfig, store: JobStore, limits: Limits, pulls: PullJobs | None = None
) -> APIRouter:
    """Render jobs live in `store`, model pulls in `pulls`: the same records, events and
    cancel, so these routes serve both."""
    api = APIRouter()

    def book(job_id: str) -> JobStore | PullJobs:
        return pulls if pulls is not None and job_id in pulls.jobs else store

    @api.post("/v1/jobs", status_code=201, response_model=Submitted, responses=ERRORS)
    def submit(
        request: Request,
        bundle: Annotated[UploadFile, File(description="the bundle folder as a zip")],
        settings: Annotated[
            str,
            Form(
                description='JSON object: {"preset": NAME, ...setting overrides}, the overrides '
                "as in components/schemas/Settings"
            ),
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

    @api.get("/v1/jobs", response_model=JobList, responses=ERRORS)
    def list_jobs(
        request: Request,
        state: Annotated[State | None, Query(description="only jobs in this state")] = None,
        tag: Annotated[str | None, Query(max_length=200)] = None,
    ) -> dict[str, Any]:
        """Every job (renders and model pulls), oldest first, with its state and queue
        position."""
        jobs = store.list(state, tag, _client(request))
        if pulls is not None:
            jobs = sorted(jobs + pulls.list(state, tag, _client(request)), key=_created)
        return {"jobs": jobs}

    @api.get("/v1/jobs/{job_id}", response_model=JobOut, responses=ERRORS)
    def get_job(request: Request, job_id: str) -> dict[str, Any]:
        jobs = book(job_id)
        return jobs.public(jobs.get(job_id, _client(request)))

    @api.delete("/v1/jobs/{job_id}", response_model=JobOut, responses=ERRORS)
    def cancel(request: Request, job_id: str) -> dict[str, Any]:
        """Cancel: a queued job at once, a running one at its next step. Idempotent; a
        finished job is returned unchanged. Frames already written are kept."""
        jobs = book(job_id)
        jobs.get(job_id, _client(request))  # a named client cancels only its own jobs
        return jobs.public(jobs.cancel(job_id))

    @api.get(
        "/v1/jobs/{job_id}/frames/{frame}",
        response_class=FileResponse,
        responses={**ERRORS, 200: {"content": {"image/png": {}}, "description": "PNG frame"}},
    )
    def frame(request: Request, job_id: str, frame: int) -> FileResponse:
        """One finished frame as PNG, by scene frame number."""
        job = store.get(job_id, _client(request))
        if frame not in job.frame_numbers:
            raise NotFound(
                f"frame {frame} is not one this job makes "
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

    @api.get(
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
        jobs = book(job_id)
        job = jobs.get(job_id, _client(request))
        start = after or 0
        if last_event_id and last_event_id.strip().isdigit():
            start = int(last_event_id.strip())
        return StreamingResponse(
            _stream(jobs, job.id, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return api


def _created(job: dict[str, Any]) -> float:
    return job["created"]


async def _stream(store: JobStore | PullJobs, job_id: str, last: int) -> AsyncIterator[str]:
    """Replay, then follow, one job's event log; a keep-alive comment when quiet.

    A job's state turns final before its final event is written (so that a client that
    reads the event and then GETs the job finds it ended); the stream waits a moment for
    that event, and ends without it only where the log could not take it (a full disk)."""
    log_ = store.logs[job_id]
    waiter = log_.subscribe()
    ended = waited = False
    try:
        yield "retry: 2000\n\n"
        while True:
            waiter.clear()
            job = store.jobs.get(job_id)  # None: expired (--keep-days) while followed
            terminal = job is None or job.state in TERMINAL  # read before the events
            for event in log_.after(last):
                last = event["id"]
                ended |= event["type"] == Event.STATE and event.get("state") in TERMINAL
                yield f"id: {last}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
            if terminal and (ended or job is None or waited):
                return
            waited = terminal
            try:
                await asyncio.wait_for(waiter.wait(), FINAL_EVENT_S if terminal else KEEPALIVE_S)
            except TimeoutError:
                if not terminal:
                    yield ": keep-alive\n\n"
    finally:
        log_.unsubscribe(waiter)
