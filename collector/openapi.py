"""The API's OpenAPI description (served at /openapi.json, browsable at /docs) via quart-schema.

The models below only document: validation stays in `collector.params`, which gives clearer
errors naming the field. `tests/test_openapi.py` checks that every route is described and that real
responses match these models, so the description cannot drift from the handlers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quart import Quart
from quart_schema import (
    QuartSchema,
    document_querystring,
    document_request,
    document_response,
)


@dataclass
class StreamSpec:
    url: str
    name: str | None = None
    options: dict[str, str] | None = None


@dataclass
class RetryOverrides:
    max_attempts: int | None = None
    initial_backoff: float | None = None
    max_backoff: float | None = None


@dataclass
class CollectBody:
    """Every field is optional; no body at all records every registered camera (or the demo)."""

    streams: list[str | StreamSpec] | None = None
    cameras: list[str] | None = None
    duration: float | None = None
    segment_seconds: float | None = None
    format: str | None = None  # mp4 | mkv | ts
    options: dict[str, str] | None = None
    retry: RetryOverrides | None = None


@dataclass
class Health:
    message: str


@dataclass
class CollectStarted:
    job_id: str
    message: str


@dataclass
class Error:
    error: str
    field: str


@dataclass
class Progress:
    step: int
    total: int


@dataclass
class JobSummary:
    job_id: str
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    progress: Progress
    error: str | None


@dataclass
class JobList:
    jobs: list[JobSummary]
    next: str | None


@dataclass
class Segment:
    index: int
    path: str
    start_time: float  # wall clock (Unix seconds) when the file was opened
    end_time: float | None  # wall clock when it was closed; null if stored before schema v3
    start_seconds: float
    duration: float
    bytes: int
    frames: int
    keyframes: int
    end_reason: str
    format: str
    codec: str  # the file's streams, e.g. "h264+aac"; "h264" when no audio could be kept


@dataclass
class StepCount:
    done: int
    total: int


@dataclass
class Source:
    name: str
    url: str  # credentials redacted
    status: str
    attempts: int
    failures: int
    steps: StepCount
    errors: list[str]
    gaps: list[dict[str, Any]]
    segments: list[Segment]


@dataclass
class Job(JobSummary):
    params: dict[str, Any] = field(default_factory=dict)
    sources: list[Source] = field(default_factory=list)


@dataclass
class Event:
    seq: int
    type: str
    job_id: str
    at: float
    message: str | None = None


@dataclass
class EventList:
    events: list[Event]


@dataclass
class CameraIn:
    name: str
    url: str
    options: dict[str, str] | None = None


@dataclass
class Camera:
    name: str
    url: str  # credentials redacted
    options: dict[str, str]


@dataclass
class CameraList:
    cameras: list[Camera]


@dataclass
class CameraDeleted:
    name: str
    deleted: bool


@dataclass
class JobsQuery:
    status: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int | None = None
    before: str | None = None


@dataclass
class CancelQuery:
    purge: bool | None = None


ERRORS = {400: Error, 401: Error, 404: Error, 413: Error, 503: Error, 507: Error}

# endpoint -> (request model, querystring model, {status: response model})
DOCUMENTED: dict[str, tuple[type | None, type | None, dict[int, type]]] = {
    "health": (None, None, {200: Health}),
    "collect": (CollectBody, None, {200: CollectStarted, **ERRORS}),
    "list_jobs": (None, JobsQuery, {200: JobList, 400: Error, 401: Error}),
    "get_job": (None, None, {200: Job, 401: Error, 404: Error}),
    "cancel_job": (None, CancelQuery, {200: JobSummary, 400: Error, 401: Error, 404: Error}),
    "job_events_log": (None, None, {200: EventList, 401: Error, 404: Error}),
    "download_segment": (None, None, {401: Error, 404: Error, 416: Error}),
    "list_cameras": (None, None, {200: CameraList, 401: Error}),
    "add_camera": (CameraIn, None, {201: Camera, 400: Error, 401: Error}),
    "delete_camera": (None, None, {200: CameraDeleted, 401: Error, 404: Error}),
    "prometheus_metrics": (None, None, {401: Error}),
}


def document(app: Quart) -> None:
    """Attach the models to the app's view functions and serve /openapi.json and /docs."""
    QuartSchema(
        app,
        info={"title": "Camera Collector API", "version": "1"},
        openapi_path="/openapi.json",
        swagger_ui_path="/docs",
        redoc_ui_path=None,
        scalar_ui_path=None,
    )
    for endpoint, (body, query, responses) in DOCUMENTED.items():
        view = app.view_functions[endpoint]
        if body is not None:
            view = document_request(body)(view)
        if query is not None:
            view = document_querystring(query)(view)
        for status, model in responses.items():
            view = document_response(model, status)(view)
        app.view_functions[endpoint] = view
