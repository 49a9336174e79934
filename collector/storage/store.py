"""The store: jobs, their sources, segments and events, and registered cameras, in SQLite or
PostgreSQL. Synchronous; called from worker threads (`trio.to_thread.run_sync`).

Reads return exactly the dicts the in-memory records give (`JobRecord.summary()` / `.view()`), so
the API answers the same whether a job is live or only in the database. The store never redacts:
it keeps what it is given, and only `CameraRow.url` is given with credentials.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import Any

from collector.errors import RequestError
from collector.storage import schema
from collector.storage.backends import Backend, Tx, open_backend
from collector.storage.writes import CameraRow, EventRow, JobRow, SegmentRow, SourceRow, Write

ACTIVE = ("queued", "running")

_JOB_COLUMNS = "job_id, status, created_at, started_at, finished_at, step, total, error"

_UPSERT_JOB = """INSERT INTO jobs
    (job_id, created_at, status, started_at, finished_at, step, total, error, params)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (job_id) DO UPDATE SET created_at = excluded.created_at,
    status = excluded.status, started_at = excluded.started_at,
    finished_at = excluded.finished_at, step = excluded.step, total = excluded.total,
    error = excluded.error, params = excluded.params"""

_UPSERT_SOURCE = """INSERT INTO sources
    (job_id, source_index, name, url, status, attempts, failures, steps_done, steps_total,
    errors, gaps) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (job_id, source_index) DO UPDATE SET name = excluded.name, url = excluded.url,
    status = excluded.status, attempts = excluded.attempts, failures = excluded.failures,
    steps_done = excluded.steps_done, steps_total = excluded.steps_total,
    errors = excluded.errors, gaps = excluded.gaps"""

_UPSERT_SEGMENT = """INSERT INTO segments
    (job_id, source_index, segment_index, path, start_time, end_time, start_seconds, duration,
    bytes, frames, keyframes, end_reason, format, codec)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (job_id, source_index, segment_index) DO UPDATE SET path = excluded.path,
    start_time = excluded.start_time, end_time = excluded.end_time,
    start_seconds = excluded.start_seconds, duration = excluded.duration, bytes = excluded.bytes,
    frames = excluded.frames, keyframes = excluded.keyframes, end_reason = excluded.end_reason,
    format = excluded.format, codec = excluded.codec"""

_INSERT_EVENT = """INSERT INTO events (job_id, seq, at, type, text, data)
    VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, seq) DO NOTHING"""

_UPSERT_CAMERA = """INSERT INTO cameras (name, url, options, created_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (name) DO UPDATE SET url = excluded.url, options = excluded.options,
    created_at = excluded.created_at"""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _write(tx: Tx, row: Write) -> None:
    match row:
        case JobRow():
            tx.execute(_UPSERT_JOB, (
                row.job_id, row.created_at, row.status, row.started_at, row.finished_at,
                row.step, row.total, row.error, _dumps(row.params),
            ))
        case SourceRow():
            tx.execute(_UPSERT_SOURCE, (
                row.job_id, row.index, row.name, row.url, row.status, row.attempts,
                row.failures, row.steps_done, row.steps_total, _dumps(row.errors),
                _dumps(row.gaps),
            ))
        case SegmentRow():
            tx.execute(_UPSERT_SEGMENT, (
                row.job_id, row.source_index, row.index, row.path, row.start_time,
                row.end_time, row.start_seconds, row.duration, row.bytes, row.frames, row.keyframes,
                row.end_reason, row.format, row.codec,
            ))
        case EventRow():
            tx.execute(_INSERT_EVENT, (
                row.job_id, row.seq, row.at, row.type, row.text, _dumps(row.data),
            ))
        case _:
            raise TypeError(f"not a storage write: {row!r}")


def _cursor(before: str) -> tuple[float | None, str]:
    """A `next` cursor's creation time and job id; (None, before) for a bare job id."""
    created, sep, job_id = before.partition("_")
    try:
        at = float(created) if sep and job_id else None
    except ValueError:
        at = None
    if at is None or not math.isfinite(at):
        return None, before
    return at, job_id


def _running(tx: Tx) -> list[str]:
    """The ids of the queued and running jobs, oldest first."""
    return [r[0] for r in tx.execute(
        "SELECT job_id FROM jobs WHERE status IN (?, ?) ORDER BY created_at, job_id", ACTIVE,
    ).fetchall()]


def _summary(row: Sequence[Any]) -> dict[str, Any]:
    """A `jobs` row selected as `_JOB_COLUMNS`, shaped as `JobRecord.summary()`."""
    job_id, status, created_at, started_at, finished_at, step, total, error = row
    return {
        "job_id": job_id,
        "status": status,
        "created_at": created_at,
        "started_at": started_at,
        "finished_at": finished_at,
        "progress": {"step": step, "total": total},
        "error": error,
    }


class Store:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect and migrate the schema forward (idempotent; safe from two processes at once)."""
        backend = open_backend(url)
        try:
            schema.migrate(backend, time.time())
        except BaseException:
            backend.close()
            raise
        return cls(backend)

    def close(self) -> None:
        self._backend.close()

    def schema_version(self) -> int:
        return schema.version(self._backend)

    # -- jobs ---------------------------------------------------------------------------------

    def apply(self, writes: Sequence[Write]) -> None:
        """Apply `writes` in order, in one transaction: all of them or none."""
        if not writes:
            return
        with self._backend.transaction(write=True) as tx:
            for row in writes:
                _write(tx, row)

    def running_jobs(self) -> list[str]:
        """The ids of the queued and running jobs, oldest first: at start-up, those a crash (or
        a drain cut short) left so."""
        with self._backend.transaction() as tx:
            return _running(tx)

    def interrupt_running(self, reason: str, at: float) -> list[str]:
        """Mark queued/running jobs and their queued/running sources `interrupted`, and end their
        event logs with the `interrupted` event a drain would have written (else a WebSocket
        replay ends nowhere, and its client is told to reconnect for more); their ids."""
        with self._backend.transaction(write=True) as tx:
            ids = _running(tx)
            for job_id in ids:
                tx.execute(
                    "UPDATE jobs SET status = ?, error = ?, finished_at = ? WHERE job_id = ?",
                    ("interrupted", reason, at, job_id),
                )
                tx.execute(
                    "UPDATE sources SET status = ? WHERE job_id = ? AND status IN (?, ?)",
                    ("interrupted", job_id, *ACTIVE),
                )
                last = tx.execute(
                    "SELECT MAX(seq) FROM events WHERE job_id = ?", (job_id,)
                ).fetchone()[0]
                tx.execute(_INSERT_EVENT, (
                    job_id, (last or 0) + 1, at, "interrupted",
                    f"Error with Job ID {job_id}: {reason}",  # as actors/events.interrupted
                    _dumps({"reason": reason}),
                ))
        return ids

    def job_counts(self) -> dict[str, int]:
        """How many jobs the table holds, by status."""
        with self._backend.transaction() as tx:
            rows = tx.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {status: count for status, count in rows}

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        """The job as `JobRecord.view()` shows it, or None."""
        with self._backend.transaction() as tx:
            job = tx.execute(
                f"SELECT {_JOB_COLUMNS}, params FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            if job is None:
                return None
            sources = tx.execute(
                """SELECT source_index, name, url, status, attempts, failures, steps_done,
                steps_total, errors, gaps FROM sources WHERE job_id = ? ORDER BY source_index""",
                (job_id,),
            ).fetchall()
            segments = tx.execute(
                """SELECT source_index, segment_index, path, start_time, end_time, start_seconds,
                duration, bytes, frames, keyframes, end_reason, format, codec FROM segments
                WHERE job_id = ? ORDER BY source_index, segment_index""",
                (job_id,),
            ).fetchall()
        by_source: dict[int, list[dict[str, Any]]] = {}
        for (source_index, index, path, start_time, end_time, start_seconds, duration, size,
             frames, keyframes, end_reason, fmt, codec) in segments:
            by_source.setdefault(source_index, []).append({
                "index": index,
                "path": path,
                "start_time": start_time,
                "end_time": end_time,
                "start_seconds": start_seconds,
                "duration": duration,
                "bytes": size,
                "frames": frames,
                "keyframes": keyframes,
                "end_reason": end_reason,
                "format": fmt,
                "codec": codec,
            })
        return {
            **_summary(job[:-1]),
            "params": json.loads(job[-1]),
            "sources": [
                {
                    "name": name,
                    "url": url,
                    "status": status,
                    "attempts": attempts,
                    "failures": failures,
                    "steps": {"done": done, "total": total},
                    "errors": json.loads(errors),
                    "gaps": json.loads(gaps),
                    "segments": by_source.get(index, []),
                }
                for (index, name, url, status, attempts, failures, done, total, errors, gaps)
                in sources
            ],
        }

    def list_jobs(
        self,
        *,
        status: str | None,
        since: float | None,
        until: float | None,
        limit: int,
        before: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Summaries newest first, `(created_at, job_id)` descending; `since <= created_at < until`.

        `before` is the cursor, the `next` this returned: `<created_at>_<job_id>` of the last
        job of the previous page, so it still leads on once that job is deleted (retention
        deletes the oldest jobs, where a newest-first walk is heading); a bare job id, the
        cursor before 2026-11-28, is still taken while the job exists. The order is total, so
        pages never repeat or skip a job, whatever the ties.
        """
        if limit < 1:
            raise RequestError("limit", "must be at least 1")
        where: list[str] = []
        params: list[Any] = []
        with self._backend.transaction() as tx:
            if before is not None:
                created, job_id = _cursor(before)
                if created is None:
                    found = tx.execute(
                        "SELECT created_at FROM jobs WHERE job_id = ?", (before,)
                    ).fetchone()
                    if found is None:
                        raise RequestError("before", "unknown cursor")
                    created = found[0]
                where.append("(created_at < ? OR (created_at = ? AND job_id < ?))")
                params += [created, created, job_id]
            if status is not None:
                where.append("status = ?")
                params.append(status)
            if since is not None:
                where.append("created_at >= ?")
                params.append(since)
            if until is not None:
                where.append("created_at < ?")
                params.append(until)
            rows = tx.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs"
                + (" WHERE " + " AND ".join(where) if where else "")
                + " ORDER BY created_at DESC, job_id DESC LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
        page = [_summary(r) for r in rows[:limit]]
        if len(rows) <= limit:
            return page, None
        return page, f"{page[-1]['created_at']!r}_{page[-1]['job_id']}"

    def events(self, job_id: str) -> list[dict[str, Any]] | None:
        """The job's events `{type, text, data, at, seq}` in `seq` order; None for no such job."""
        with self._backend.transaction() as tx:
            if tx.execute("SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)).fetchone() is None:
                return None
            rows = tx.execute(
                "SELECT type, text, data, at, seq FROM events WHERE job_id = ? ORDER BY seq",
                (job_id,),
            ).fetchall()
        return [
            {"type": type_, "text": text, "data": json.loads(data), "at": at, "seq": seq}
            for type_, text, data, at, seq in rows
        ]

    def delete_job(self, job_id: str) -> list[str]:
        """Remove the job and all its rows; return its segment paths (the caller deletes files)."""
        with self._backend.transaction(write=True) as tx:
            paths = [r[0] for r in tx.execute(
                "SELECT path FROM segments WHERE job_id = ? ORDER BY source_index, segment_index",
                (job_id,),
            ).fetchall()]
            for table in ("segments", "events", "sources", "jobs"):
                tx.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))
        return paths

    # -- retention ----------------------------------------------------------------------------

    def jobs_finished_before(self, at: float) -> list[str]:
        """Ids of finished (not queued/running) jobs with `finished_at < at`, oldest first."""
        with self._backend.transaction() as tx:
            rows = tx.execute(
                """SELECT job_id FROM jobs WHERE status NOT IN (?, ?) AND finished_at < ?
                ORDER BY finished_at, job_id""",
                (*ACTIVE, at),
            ).fetchall()
        return [r[0] for r in rows]

    def segment_bytes_by_job(self) -> list[tuple[str, int, float]]:
        """`(job_id, total segment bytes, finished_at)` of finished jobs, oldest first.

        A finished job without `finished_at` (not expected) counts as finished when created.
        """
        with self._backend.transaction() as tx:
            rows = tx.execute(
                """SELECT j.job_id, CAST(COALESCE(SUM(s.bytes), 0) AS BIGINT),
                COALESCE(j.finished_at, j.created_at) AS finished
                FROM jobs j LEFT JOIN segments s ON s.job_id = j.job_id
                WHERE j.status NOT IN (?, ?)
                GROUP BY j.job_id, j.finished_at, j.created_at
                ORDER BY finished, j.job_id""",
                ACTIVE,
            ).fetchall()
        return [(job_id, int(size), float(finished)) for job_id, size, finished in rows]

    # -- cameras ------------------------------------------------------------------------------

    def cameras(self) -> list[CameraRow]:
        with self._backend.transaction() as tx:
            rows = tx.execute(
                "SELECT name, url, options, created_at FROM cameras ORDER BY name"
            ).fetchall()
        return [
            CameraRow(name=name, url=url, options=json.loads(options), created_at=created_at)
            for name, url, options, created_at in rows
        ]

    def put_camera(self, row: CameraRow) -> None:
        with self._backend.transaction(write=True) as tx:
            tx.execute(_UPSERT_CAMERA, (row.name, row.url, _dumps(row.options), row.created_at))

    def delete_camera(self, name: str) -> bool:
        with self._backend.transaction(write=True) as tx:
            found = tx.execute("SELECT 1 FROM cameras WHERE name = ?", (name,)).fetchone()
            if found is not None:
                tx.execute("DELETE FROM cameras WHERE name = ?", (name,))
        return found is not None
