"""Builders for storage tests: a realistic JobRecord and the rows that persist it."""

from __future__ import annotations

from typing import Any

from actors.records import JobRecord, SourceRecord
from collector.storage import JobRow, SegmentRow, SourceRow, Write
from collector.urls import redact

SECRET = "s3cret-pw"


def job_row(job_id: str, created_at: float, status: str = "completed", **kw: Any) -> JobRow:
    fields: dict[str, Any] = {
        "started_at": created_at + 0.5,
        "finished_at": None if status in ("queued", "running") else created_at + 10,
        "step": 0,
        "total": 5,
        "error": None,
        "params": {"duration": 10},
    }
    fields.update(kw)
    return JobRow(job_id=job_id, created_at=created_at, status=status, **fields)


def segment(index: int, *, start: float, size: int = 1000, reason: str = "cut") -> dict[str, Any]:
    return {
        "index": index,
        "path": f"/data/jobs/j/cam/segment-{index:05d}.mp4",
        "start_time": 1_700_000_000.123456 + start,
        "end_time": 1_700_000_002.654321 + start,
        "start_seconds": start,
        "duration": 2.04,
        "bytes": size,
        "frames": 51,
        "keyframes": 1,
        "end_reason": reason,
        "format": "mp4",
        "codec": "h264+aac",
    }


def record(job_id: str = "job-1") -> JobRecord:
    """A failed two-source job with segments, gaps and errors; source URLs carry credentials."""
    front = SourceRecord(
        name="front", url=f"rtsp://admin:{SECRET}@10.0.0.5/main", options={"rtsp_transport": "tcp"},
        steps_total=3, status="completed", attempts=2, failures=1, steps_done=3,
        errors=["stall: no packets for 10 s"],
        gaps=[{"start": 1_700_000_002.5, "end": 1_700_000_004.0, "reason": "stall"}],
    )
    front.segments += [segment(1, start=0.0, reason="discontinuity"), segment(2, start=2.0),
                       segment(3, start=4.0, size=2**33)]  # > 4 GiB: needs a 64-bit column
    back = SourceRecord(
        name="back", url=f"http://user:{SECRET}@cam.local/live.m3u8", options={},
        steps_total=3, status="failed", attempts=5, failures=5,
        errors=[f"refused: connection refused by {redact('http://user:x@cam.local/')}"] * 5,
    )
    return JobRecord(
        id=job_id, params={"duration": 6.0, "segment_seconds": 2.0, "format": "mp4",
                           "streams": [redact(front.url), redact(back.url)]},
        sources=[front, back], status="failed", created_at=1_700_000_000.0,
        started_at=1_700_000_000.25, finished_at=1_700_000_009.75, step=3,
        error="source 'back' failed after 5 attempts",
    )


def rows_for(rec: JobRecord, fmt: str = "mp4") -> list[Write]:
    """What the job actor would write for `rec`: its row, its sources' rows, their segments."""
    rows: list[Write] = [JobRow(
        job_id=rec.id, created_at=rec.created_at, status=rec.status, started_at=rec.started_at,
        finished_at=rec.finished_at, step=rec.step, total=rec.total, error=rec.error,
        params=rec.params,
    )]
    for i, src in enumerate(rec.sources):
        rows.append(SourceRow(
            job_id=rec.id, index=i, name=src.name, url=redact(src.url), status=src.status,
            attempts=src.attempts, failures=src.failures, steps_done=src.steps_done,
            steps_total=src.steps_total, errors=list(src.errors), gaps=list(src.gaps),
        ))
        for seg in src.segments:
            rows.append(SegmentRow(
                job_id=rec.id, source_index=i, index=seg["index"], path=seg["path"],
                start_time=seg["start_time"], end_time=seg["end_time"],
                start_seconds=seg["start_seconds"],
                duration=seg["duration"], bytes=seg["bytes"], frames=seg["frames"],
                keyframes=seg["keyframes"], end_reason=seg["end_reason"], format=fmt,
                codec=seg["codec"],
            ))
    return rows
