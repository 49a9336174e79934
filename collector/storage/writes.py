"""The rows the actors hand to the store: frozen records, one per table, no I/O.

The actors build these in the trio thread and send batches of them to `Store.apply` in a worker
thread. Every URL here except `CameraRow.url` is already redacted: the store keeps exactly what it
is given and never sees a credential it could leak through the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRow:
    """Upserted by `job_id`."""

    job_id: str
    created_at: float
    status: str
    started_at: float | None
    finished_at: float | None
    step: int
    total: int
    error: str | None
    params: dict[str, Any]  # already redacted


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceRow:
    """Upserted by `(job_id, index)`."""

    job_id: str
    index: int
    name: str
    url: str  # already redacted
    status: str
    attempts: int
    failures: int
    steps_done: int
    steps_total: int
    errors: list[str]
    gaps: list[dict[str, Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentRow:
    """Upserted by `(job_id, source_index, index)`."""

    job_id: str
    source_index: int
    index: int
    path: str
    start_time: float
    start_seconds: float
    duration: float
    bytes: int
    frames: int
    keyframes: int
    end_reason: str
    format: str
    codec: str = ""  # e.g. "h264+aac"
    end_time: float | None = None  # wall clock when the file was closed; None before schema v3


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRow:
    """Inserted; a second row with the same `(job_id, seq)` is ignored."""

    job_id: str
    seq: int
    at: float
    type: str
    text: str | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraRow:
    """A registered camera. `url` keeps its credentials (to connect); the API never shows it."""

    name: str
    url: str
    options: dict[str, str]
    created_at: float


Write = JobRow | SourceRow | SegmentRow | EventRow
