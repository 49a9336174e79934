"""The supervisor actor: the one thing the HTTP/WebSocket layer talks to.

It owns the job actors and the camera actors (children in its nursery), the camera registry and the
job table. Requests arrive as messages in one bounded inbox; replies go back through each request's
size-1 reply channel. A camera actor lives while at least one job subscribes to it; the supervisor
closes its inbox when the last subscriber leaves, so starting and stopping cameras never races.
Retries are the cameras' (reconnect with backoff) and the jobs' (give a source up after
`retry.max_attempts` consecutive failures); the supervisor itself never dies of a child's error.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import outcome
import trio

from actors import events
from actors.camera import Camera, CameraStatistics
from actors.database import DatabaseReader, DatabaseWriter
from actors.job import CLOSE_GRACE_S, UNSUBSCRIBE_PATIENCE_S, Job
from actors.messages import (
    AddSubscriber,
    CancelJob,
    DeleteCamera,
    Drain,
    GetEvents,
    GetJob,
    GetStatistics,
    ListCameras,
    ListJobs,
    PurgeJob,
    PutCamera,
    RemoveSubscriber,
    StartJob,
    SubscribeCamera,
    SubscribeJob,
    SupervisorMessage,
    UnsubscribeCamera,
    answer,
)
from actors.records import JobRecord, SourceRecord
from collector.config import Settings
from collector.errors import NotFound, RequestError
from collector.media.opener import Opener
from collector.media.recovery import leftovers
from collector.memory import RELEASE_INTERVAL_S, release_free_memory
from collector.params import CollectRequest, SourceSpec
from collector.storage import CameraRow, EventRow, SegmentRow, Store
from collector.urls import redact

log = logging.getLogger(__name__)

CameraKey = tuple[str, tuple[tuple[str, str], ...]]
# CameraStatistics counters that SupervisorStatistics sums over the process's life
_LIFETIME_COUNTERS = ("sessions", "failures", "packets", "bytes", "dropped_subscribers")


def _summary(view: dict[str, Any]) -> dict[str, Any]:
    """A stored job view cut down to what `JobRecord.summary()` gives for a live job."""
    return {k: v for k, v in view.items() if k not in ("params", "sources")}


class Busy(RequestError):
    status = 503


class InsufficientStorage(RequestError):
    status = 507


FINISHED_KEPT_IN_MEMORY = 100  # finished jobs kept live for fast reads; older ones come from the DB


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorStatistics:
    jobs: dict[str, int]
    cameras: tuple[CameraStatistics, ...]
    # over the process's life, including cameras already stopped:
    sessions_opened: int
    session_failures: int  # failed opens and ended sessions
    packets_received: int
    bytes_received: int
    dropped_subscribers: int  # job sources dropped for lagging
    websocket_subscribers: int


@dataclass(slots=True)
class _CameraEntry:
    camera: Camera
    subscribers: set[int] = field(default_factory=set)


@dataclass(slots=True)
class _JobEntry:
    record: JobRecord
    events: events.EventLog
    actor: Job


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        opener_for: Callable[[str], Opener],
        database_url: str,
        config_cameras: tuple[SourceSpec, ...] = (),
    ) -> None:
        self.settings, self.opener_for = settings, opener_for
        self.database_url, self.config_cameras = database_url, config_cameras
        self._evicted: dict[str, int] = {}  # finished jobs no longer in memory, by status
        self._purging: set[str] = set()  # job ids whose purge is under way
        self._db: DatabaseWriter | None = None
        self._reader: DatabaseReader | None = None
        self.inbox, self._inbox = trio.open_memory_channel[SupervisorMessage](1024)
        self.cameras: dict[str, SourceSpec] = {}  # the registry of named cameras
        self._jobs: dict[str, _JobEntry] = {}
        self._cameras: dict[CameraKey, _CameraEntry] = {}
        self._stopped = dict.fromkeys(_LIFETIME_COUNTERS, 0)  # counts of stopped cameras
        self._writer_limiter = trio.CapacityLimiter(settings.writer_threads)
        self._segment_turns = trio.Lock()  # jobs open and close segment files in turn (job.py)
        self._draining = False  # set by Drain: no new jobs from then on
        self._nursery: trio.Nursery | None = None

    async def run(
        self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        writer_store = await trio.to_thread.run_sync(Store.open, self.database_url)
        reader_store = await trio.to_thread.run_sync(Store.open, self.database_url)
        try:
            # The files a crash left open are listed first, while their jobs still read as
            # running: a start that dies in between does it again, rather than never.
            for job_id in await trio.to_thread.run_sync(reader_store.running_jobs):
                try:
                    rows = await trio.to_thread.run_sync(self._leftover_rows, reader_store, job_id)
                    if rows:
                        await trio.to_thread.run_sync(writer_store.apply, rows)
                        log.info("recovery.listed job=%s segments=%d", job_id, len(rows))
                except Exception as exc:  # the files stay on disk; the service must start
                    log.error("recovery.failed job=%s error=%s", job_id, exc)
            stale = await trio.to_thread.run_sync(
                writer_store.interrupt_running,
                "the collector stopped while the job was running", time.time(),
            )
            if stale:
                log.warning(
                    "supervisor.interrupted_on_start jobs=%d ids=%s", len(stale), ",".join(stale)
                )
            # The job table's counts (`camera_collector_jobs`): no job is in memory yet
            self._evicted = await trio.to_thread.run_sync(reader_store.job_counts)
            for row in await trio.to_thread.run_sync(reader_store.cameras):
                self.cameras[row.name] = SourceSpec(name=row.name, url=row.url, options=row.options)
            for spec in self.config_cameras:
                self.cameras.setdefault(spec.name, spec)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._db = await nursery.start(DatabaseWriter(writer_store).run)
                self._reader = DatabaseReader(reader_store)
                nursery.start_soon(self._housekeeping)
                nursery.start_soon(self._release_memory)
                task_status.started(self)
                with self._inbox:
                    async for msg in self._inbox:
                        self._handle(msg)
                nursery.cancel_scope.cancel()
        finally:
            writer_store.close()
            reader_store.close()

    # --- message handling (synchronous: every reply is `answer`, which never blocks) ----------

    def _handle(self, msg: SupervisorMessage) -> None:
        match msg:
            case StartJob(request=request, reply=reply):
                answer(reply, outcome.capture(self._start_job, request))
            case GetJob(job_id=job_id, reply=reply):
                if job_id in self._jobs:
                    answer(reply, outcome.Value(self._jobs[job_id].record.view()))
                else:
                    self._later(reply, self._stored, Store.get_job, job_id)
            case GetEvents(job_id=job_id, reply=reply):
                if job_id in self._jobs:
                    history = self._jobs[job_id].events.history
                    answer(reply, outcome.Value([
                        {"seq": i, **e.as_json()} for i, e in enumerate(history, 1)
                    ]))
                else:
                    self._later(reply, self._stored_events, job_id)
            case ListJobs(
                status=status, since=since, until=until, limit=limit, before=before, reply=reply
            ):
                self._later(reply, self._list_jobs, status, since, until, limit, before)
            case CancelJob(job_id=job_id, reply=reply):
                entry = self._jobs.get(job_id)
                if entry is not None:
                    if entry.record.active:
                        entry.actor.stop("cancelled")
                        self._later(reply, self._when_stopped, entry)
                    else:
                        answer(reply, outcome.Value(entry.record.summary()))
                else:
                    self._later(reply, self._stored_summary, job_id)
            case PurgeJob(job_id=job_id, reply=reply):
                entry = self._jobs.get(job_id)
                if entry is not None and entry.record.active:
                    answer(reply, outcome.Error(
                        RequestError("job_id", "job is still running; cancel it first")
                    ))
                else:
                    in_memory = self._jobs.pop(job_id, None) is not None
                    self._later(reply, self._purge, job_id, in_memory)
            case SubscribeJob(job_id=job_id, reply=reply):
                if job_id in self._jobs:
                    subscription = self._jobs[job_id].events.subscribe()
                    if not answer(reply, outcome.Value(subscription)):
                        subscription.close()  # nobody will read it
                else:
                    self._later(reply, self._replay, job_id)
            case ListCameras(reply=reply):
                answer(reply, outcome.Value(self._camera_views()))
            case PutCamera(name=name, url=url, options=options, reply=reply):
                row = CameraRow(name=name, url=url, options=dict(options), created_at=time.time())
                self._later(reply, self._put_camera, row)
            case DeleteCamera(name=name, reply=reply):
                if name not in self.cameras:
                    answer(reply, outcome.Error(NotFound("name", f"unknown camera {name!r}")))
                else:
                    self._later(reply, self._delete_camera, name)
            case SubscribeCamera():
                self._subscribe_camera(msg)
            case UnsubscribeCamera():
                self._unsubscribe_camera(msg)
            case GetStatistics(reply=reply):
                answer(reply, outcome.Value(self.statistics()))
            case Drain(reason=reason, reply=reply):
                self._draining = True
                assert self._nursery is not None
                self._nursery.start_soon(self._drain, reason, reply)
            case _:
                raise TypeError(f"supervisor got an unknown message {msg!r}")

    def _later(
        self,
        reply: trio.MemorySendChannel[outcome.Outcome[Any]],
        fn: Callable[..., Any],
        *args: Any,
    ) -> None:
        """Answer `reply` with `await fn(*args)` from a task of its own (reads that touch
        the DB)."""

        async def later() -> None:
            with reply:  # closed if we are cancelled first
                answer(reply, await outcome.acapture(fn, *args))

        assert self._nursery is not None
        self._nursery.start_soon(later)

    async def _stored(self, fn: Callable[..., Any], job_id: str) -> Any:
        assert self._reader is not None
        found = await self._reader.read(fn, job_id)
        if found is None:
            raise NotFound("job_id", "job not found")
        return found

    async def _when_stopped(self, entry: _JobEntry) -> dict[str, Any]:
        """A cancelled job's summary once it has stopped (its open segment closed, usually in
        milliseconds), so that DELETE answers `cancelled` rather than `running`; as it is after
        the job's closing grace, whatever that is."""
        with trio.move_on_after(UNSUBSCRIBE_PATIENCE_S + CLOSE_GRACE_S + 1):
            await entry.actor.finished.wait()
        return entry.record.summary()

    async def _stored_events(self, job_id: str) -> list[dict[str, Any]]:
        """A stored job's event log in the shape a job in memory answers with."""
        rows = await self._stored(Store.events, job_id)
        return [{"seq": row["seq"], **events.from_row(job_id, row).as_json()} for row in rows]

    async def _stored_summary(self, job_id: str) -> dict[str, Any]:
        return _summary(await self._stored(Store.get_job, job_id))

    async def _replay(self, job_id: str) -> trio.MemoryReceiveChannel[events.JobEvent]:
        return events.replay(job_id, await self._stored(Store.events, job_id))

    async def _list_jobs(
        self,
        status: str | None,
        since: float | None,
        until: float | None,
        limit: int,
        before: str | None,
    ) -> dict[str, Any]:
        assert self._db is not None and self._reader is not None
        await self._db.flush()  # the page must include every job accepted so far
        page, cursor = await self._reader.read(
            Store.list_jobs, status=status, since=since, until=until, limit=limit, before=before
        )
        return {"jobs": page, "next": cursor}

    async def _purge(self, job_id: str, in_memory: bool) -> dict[str, Any]:
        assert self._db is not None and self._reader is not None
        if job_id in self._purging:  # a second DELETE while the first is under way
            raise NotFound("job_id", "job not found (a purge of it is under way)")
        self._purging.add(job_id)
        try:
            await self._db.flush()
            view = await self._stored(Store.get_job, job_id)
            paths = await self._reader.read(Store.delete_job, job_id)
        finally:
            self._purging.discard(job_id)
        if not in_memory and self._evicted.get(view["status"], 0) > 0:  # counted as evicted
            self._evicted[view["status"]] -= 1
        await trio.to_thread.run_sync(self._delete_files, job_id, paths)
        log.info("job.purged job=%s files=%d", job_id, len(paths))
        return _summary(view)

    def _leftover_rows(self, store: Store, job_id: str) -> list[SegmentRow]:
        """Rows for the segment files a crash left open in `job_id`'s folders (media/recovery.py),
        placed after each source's listed segments. Blocking: runs in a worker thread."""
        view = store.get_job(job_id)
        rows: list[SegmentRow] = []
        for source_index, source in enumerate(view["sources"] if view else []):
            listed = source["segments"]
            position = max((s["start_seconds"] + s["duration"] for s in listed), default=0.0)
            folder = Path(self.settings.data_dir) / "jobs" / job_id / source["name"]
            for found in leftovers(folder, {s["index"] for s in listed}):
                rows.append(SegmentRow(
                    job_id=job_id, source_index=source_index, index=found.index,
                    path=str(found.path), start_time=found.start_time, end_time=found.end_time,
                    start_seconds=round(position, 6), duration=found.duration, bytes=found.bytes,
                    frames=found.frames, keyframes=found.keyframes, end_reason="crash",
                    format=found.format, codec=found.codec,
                ))
                position += found.duration
        return rows

    def _delete_files(self, job_id: str, paths: list[str]) -> None:
        root = (Path(self.settings.data_dir) / "jobs").resolve()
        for path in paths:
            p = Path(path).resolve()
            if p.is_relative_to(root):  # never delete outside the data directory
                p.unlink(missing_ok=True)
        folder = (root / job_id).resolve()
        if folder.is_relative_to(root) and folder != root:
            shutil.rmtree(folder, ignore_errors=True)

    def _camera_views(self) -> list[dict[str, Any]]:
        return [
            {"name": c.name, "url": redact(c.url), "options": dict(c.options)}
            for c in sorted(self.cameras.values(), key=lambda c: c.name)
        ]

    # The registry in memory follows the store: a camera the database did not take is not
    # used either, and one it did not delete stays, as it would after a restart.
    async def _put_camera(self, row: CameraRow) -> dict[str, Any]:
        assert self._reader is not None
        await self._reader.read(Store.put_camera, row)
        self.cameras[row.name] = SourceSpec(name=row.name, url=row.url, options=dict(row.options))
        log.info("camera.registered name=%s url=%s", row.name, redact(row.url))
        return {"name": row.name, "url": redact(row.url), "options": dict(row.options)}

    async def _delete_camera(self, name: str) -> dict[str, Any]:
        assert self._reader is not None
        await self._reader.read(Store.delete_camera, name)
        self.cameras.pop(name, None)
        return {"name": name, "deleted": True}

    def _save(self, *rows: Any) -> None:
        assert self._db is not None
        self._db.send(*rows)

    def _start_job(self, request: CollectRequest) -> dict[str, Any]:
        if self._draining:  # it would be cut short at once, and end as an internal error
            raise Busy("jobs", "the service is shutting down; try again later")
        active = sum(1 for e in self._jobs.values() if e.record.active)
        if active >= self.settings.max_concurrent_jobs:
            raise Busy("jobs", f"too many running jobs ({active}); try again later")
        free = shutil.disk_usage(self.settings.data_dir).free
        if free < self.settings.min_free_bytes:
            raise InsufficientStorage(
                "data_dir", f"only {free // 2**20} MiB free, below the floor of "
                f"{self.settings.min_free_bytes // 2**20} MiB; no new jobs until space is freed",
            )
        self._evict_finished()
        job_id = str(uuid.uuid4())
        record = JobRecord(
            id=job_id,
            params=request.redacted(),
            sources=[
                SourceRecord(
                    name=s.name, url=s.url, options=dict(s.options),
                    steps_total=request.steps_per_source,
                )
                for s in request.sources
            ],
        )
        def persist_event(seq: int, event: events.JobEvent) -> None:
            self._save(EventRow(job_id=job_id, seq=seq, at=event.at, type=event.type,
                                text=event.text, data=event.data))

        log_ = events.EventLog(on_publish=persist_event)
        self._save(*record.rows())
        job = Job(
            record,
            request,
            supervisor=self.inbox,
            log_=log_,
            folder=Path(self.settings.data_dir) / "jobs" / job_id,
            writer_limiter=self._writer_limiter,
            segment_turns=self._segment_turns,
            subscriber_buffer=self.settings.subscriber_buffer,
            save=self._save,
        )
        self._jobs[job_id] = _JobEntry(record, log_, job)
        assert self._nursery is not None
        self._nursery.start_soon(job.run)
        return record.view()

    def _evict_finished(self) -> None:
        """Keep only the newest finished jobs in memory; the rest are read from the database."""
        finished = [
            i for i, e in self._jobs.items() if not e.record.active and e.actor.finished.is_set()
        ]
        for job_id in finished[: max(0, len(finished) - FINISHED_KEPT_IN_MEMORY)]:
            status = self._jobs.pop(job_id).record.status
            self._evicted[status] = self._evicted.get(status, 0) + 1

    def _subscribe_camera(self, msg: SubscribeCamera) -> None:
        key: CameraKey = (msg.url, msg.options)
        entry = self._cameras.get(key)
        if entry is None:
            camera = Camera(
                msg.url, dict(msg.options), self.opener_for(msg.url), msg.retry,
                stall_timeout_s=self.settings.stall_timeout_s,
            )
            entry = self._cameras[key] = _CameraEntry(camera)
            assert self._nursery is not None
            self._nursery.start_soon(camera.run)
        entry.subscribers.add(msg.subscriber)
        entry.camera.inbox.send_nowait(
            AddSubscriber(subscriber=msg.subscriber, channel=msg.channel, loan=msg.loan)
        )

    def _unsubscribe_camera(self, msg: UnsubscribeCamera) -> None:
        key: CameraKey = (msg.url, msg.options)
        entry = self._cameras.get(key)
        if entry is None or msg.subscriber not in entry.subscribers:
            return
        entry.subscribers.discard(msg.subscriber)
        entry.camera.inbox.send_nowait(RemoveSubscriber(subscriber=msg.subscriber))
        if not entry.subscribers:
            del self._cameras[key]
            final = entry.camera.statistics()
            for name in _LIFETIME_COUNTERS:
                self._stopped[name] += getattr(final, name)
            entry.camera.inbox.close()

    def statistics(self) -> SupervisorStatistics:
        by_status: dict[str, int] = dict(self._evicted)
        for e in self._jobs.values():
            by_status[e.record.status] = by_status.get(e.record.status, 0) + 1
        cams = tuple(e.camera.statistics() for e in self._cameras.values())

        def lifetime(name: str) -> int:
            return self._stopped[name] + sum(getattr(c, name) for c in cams)

        return SupervisorStatistics(
            jobs=by_status,
            cameras=cams,
            sessions_opened=lifetime("sessions"),
            session_failures=lifetime("failures"),
            packets_received=lifetime("packets"),
            bytes_received=lifetime("bytes"),
            dropped_subscribers=lifetime("dropped_subscribers"),
            websocket_subscribers=sum(e.events.subscribers for e in self._jobs.values()),
        )

    async def _drain(
        self, reason: str, reply: trio.MemorySendChannel[outcome.Outcome[Any]]
    ) -> None:
        running = [e for e in self._jobs.values() if e.record.active]
        log.info("supervisor.drain jobs=%d reason=%s", len(running), reason)
        for entry in running:
            entry.actor.stop("interrupted", reason)
        with trio.move_on_after(self.settings.graceful_timeout_s):
            for entry in running:
                await entry.actor.finished.wait()
            assert self._db is not None
            await self._db.flush()
        answer(reply, outcome.Value(len(running)))

    # --- housekeeping: the disk guard and retention ---------------------------------------------

    async def _housekeeping(self) -> None:
        while True:
            await trio.sleep(self.settings.housekeeping_interval_s)
            self._guard_disk()
            try:
                await self._apply_retention()
            except Exception as exc:  # retention must never take the collector down
                log.error("retention.failed error=%s", exc)

    async def _release_memory(self) -> None:
        while True:
            await trio.sleep(RELEASE_INTERVAL_S)
            if not await trio.to_thread.run_sync(release_free_memory):
                return  # not glibc: nothing to do

    def _guard_disk(self) -> None:
        free = shutil.disk_usage(self.settings.data_dir).free
        if free >= self.settings.min_free_bytes:
            return
        running = [e for e in self._jobs.values() if e.record.active]
        if running:
            log.error("disk.low free_mib=%d stopping_jobs=%d", free // 2**20, len(running))
        for entry in running:
            entry.actor.stop("failed", f"insufficient disk space: {free // 2**20} MiB free")

    async def _apply_retention(self) -> None:
        assert self._reader is not None
        doomed: list[str] = []
        if self.settings.retention_max_age_s > 0:
            cutoff = time.time() - self.settings.retention_max_age_s
            doomed += await self._reader.read(Store.jobs_finished_before, cutoff)
        if self.settings.retention_max_bytes > 0:
            usage = await self._reader.read(Store.segment_bytes_by_job)
            total = sum(size for _, size, _ in usage)
            for job_id, size, _ in usage:  # oldest first
                if total <= self.settings.retention_max_bytes:
                    break
                doomed.append(job_id)
                total -= size
        for job_id in dict.fromkeys(doomed):
            if job_id in self._jobs and self._jobs[job_id].record.active:
                continue
            in_memory = self._jobs.pop(job_id, None) is not None
            await self._purge(job_id, in_memory)
            log.info("retention.deleted job=%s", job_id)
