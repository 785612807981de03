"""Response bodies of the wire protocol, declared so /openapi.json describes them exactly."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from storyshade.wire.states import JobState

State = JobState


class ErrorBody(BaseModel):
    """Every 4xx/5xx body: what went wrong, how to fix it, and which input it was."""

    error: str
    fix: str = ""
    field: str | None = None


class JobOut(BaseModel):
    id: str
    shot: str
    state: State
    priority: int = 0
    tag: str = ""
    preset: str | None = None
    engine: str = ""
    created: float
    started: float | None = None
    finished: float | None = None
    frame_numbers: list[int]
    frames_done: list[int]
    error: ErrorBody | None = None
    progress: dict[str, Any] = Field(default_factory=dict)
    position: int | None = Field(None, description="place in the queue, 1 = next; queued only")
    attempts: int = 0
    cancel_requested: bool = False
    reused: list[str] = Field(default_factory=list, description="stages served by the cache")
    owner: str | None = Field(None, description="the named client that submitted it, if any")
    kind: Literal["render", "pull"] = Field(
        "render", description="render: a shot; pull: a model download (POST /v1/models/pull)"
    )


class Submitted(JobOut):
    frames: list[int] = Field(description="the shot's frame numbers (same as frame_numbers)")


class JobList(BaseModel):
    jobs: list[JobOut]


class FoundModel(BaseModel):
    kind: str
    name: str = Field(description="as presets name it (a hub repo id in the HF cache)")
    layout: str = Field(description="diffusers, single-file or hf-cache")
    refused: str = Field(
        "", description="why it cannot be used (weights in an unsafe format), if so"
    )


class Lack(BaseModel):
    role: str
    name: str
    kind: str
    pullable: bool = Field(description="POST /v1/models/pull can download it")


class PresetModels(BaseModel):
    name: str
    layer: str
    complete: bool = Field(description="every model it names (over the default layers) is here")
    lacks: list[Lack]


class ModelsOut(BaseModel):
    models: list[FoundModel]
    presets: list[PresetModels]
    pull_folder: bool = Field(description="the server has a models folder to pull into")


class PlannedFile(BaseModel):
    path: str
    bytes: int


class PlannedModel(BaseModel):
    name: str
    repo: str
    commit: str
    kind: str
    dest: str = Field(description="where it lands, relative to the models folder")
    present: bool = Field(description="already there: nothing is fetched")
    bytes: int
    have: int = Field(description="bytes an interrupted pull left, resumed rather than fetched")
    files: list[PlannedFile]


class PullPlan(BaseModel):
    """A dry run's answer: what a pull would fetch, and the room it needs."""

    variant: str
    models: list[PlannedModel]
    total_bytes: int
    have_bytes: int
    needed_bytes: int = Field(description="what is still to download")
    free_bytes: int
    margin_bytes: int = Field(description="kept free beside the download")
    not_downloadable: list[dict[str, str]] = Field(
        description="models the presets name that no known source has (role, name)"
    )


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="'degraded' while submits are refused for lack of room (see `degraded`)"
    )
    degraded: list[Literal["disk"]] = Field(
        default_factory=list, description="why: 'disk' = free space under --min-free-mb"
    )
    version: str
    api: int
    device: str
    devices: list[str] | None = Field(
        None, description="what settings.device may name here; null: the Ray workers decide"
    )
    auth: bool = Field(description="whether requests must carry a bearer token")
    limits: dict[str, int]
    jobs: dict[str, int] = Field(description="jobs by state (a named client: its own only)")
    models: dict[str, int] | None = Field(None, description="resident models; admin only")
    model_roots: list[str] = Field(
        description="model folders; a named client gets one '<models>' per folder, no paths"
    )
    workers: dict[str, Any] | None = Field(
        None, description="serve --ray: the cluster and each Ray worker; null otherwise"
    )
    worker_restarts: int | None = Field(
        None, description="worker threads replaced after they stopped; admin only"
    )
    disk: dict[str, int] | None = Field(
        None, description="the data folder's free_bytes and min_free_bytes; admin only"
    )


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "malformed request or settings"),
        (401, "token missing or wrong (servers started with --token)"),
        (403, "request from a web page origin that is not allowed, or a pull by a client"),
        (404, "no such job, frame or endpoint"),
        (502, "the model hub refused or could not be reached (a pull's dry run)"),
        (413, "upload over the size limit"),
        (421, "Host header is not a loopback name"),
        (422, "invalid bundle, settings or models; `field` names the input"),
        (507, "the server's disk is full"),
    )
}
