"""The state of a job and its sources, as the job actor keeps it and the API shows it.

Only the job actor writes a JobRecord; the supervisor reads it (in the same trio thread) to answer
`GET /jobs/...`. Views never contain credentials.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from collector.media.segments import SegmentResult
from collector.storage import JobRow, SegmentRow, SourceRow
from collector.urls import redact


@dataclass(slots=True, kw_only=True)
class SourceRecord:
    name: str
    url: str  # as given, with credentials: never shown
    options: dict[str, str]
    steps_total: int
    status: str = "queued"  # queued | running | completed | failed | cancelled | interrupted
    attempts: int = 0  # sessions opened
    failures: int = 0  # failed or ended sessions
    steps_done: int = 0
    errors: list[str] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)

    def add_segment(self, seg: SegmentResult) -> None:
        self.segments.append(
            {
                "index": seg.index,
                "path": str(seg.path),
                "start_time": seg.started_at,
                "end_time": seg.ended_at,
                "start_seconds": seg.start_seconds,
                "duration": seg.duration,
                "bytes": seg.bytes,
                "frames": seg.frames,
                "keyframes": seg.keyframes,
                "end_reason": seg.reason,
                "format": seg.format,
                "codec": seg.codec,
            }
        )

    def row(self, job_id: str, index: int) -> SourceRow:
        return SourceRow(
            job_id=job_id, index=index, name=self.name, url=redact(self.url), status=self.status,
            attempts=self.attempts, failures=self.failures, steps_done=self.steps_done,
            steps_total=self.steps_total, errors=list(self.errors),
            gaps=[dict(g) for g in self.gaps],
        )

    def segment_row(self, job_id: str, index: int) -> SegmentRow:
        return SegmentRow(job_id=job_id, source_index=index, **self.segments[-1])

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": redact(self.url),
            "status": self.status,
            "attempts": self.attempts,
            "failures": self.failures,
            "steps": {"done": self.steps_done, "total": self.steps_total},
            "errors": list(self.errors),
            "gaps": list(self.gaps),
            "segments": list(self.segments),
        }


@dataclass(slots=True, kw_only=True)
class JobRecord:
    id: str
    params: dict[str, Any]  # already redacted
    sources: list[SourceRecord]
    status: str = "queued"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    step: int = 0
    error: str | None = None

    @property
    def total(self) -> int:
        return sum(s.steps_total for s in self.sources)

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    def summary(self) -> dict[str, Any]:
        return {
            "job_id": self.id,
            "status": self.status,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "progress": {"step": self.step, "total": self.total},
            "error": self.error,
        }

    def rows(self, source: SourceRecord | None = None) -> list[JobRow | SourceRow]:
        """The job and its sources (or only `source`) as they are now, for the database writer
        (upserts). A step of one source saves only that source: saving every source on every
        step would cost a job of N sources N rows a step."""
        job = JobRow(
            job_id=self.id, created_at=self.created_at, status=self.status,
            started_at=self.started_at, finished_at=self.finished_at, step=self.step,
            total=self.total, error=self.error, params=self.params,
        )
        if source is not None:
            return [job, source.row(self.id, self.sources.index(source))]
        return [job, *(s.row(self.id, i) for i, s in enumerate(self.sources))]

    def view(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "params": self.params,
            "sources": [s.view() for s in self.sources],
        }
