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
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import outcome
import trio

from actors import events
from actors.camera import Camera, CameraStatistics
from actors.job import Job
from actors.messages import (
    AddSubscriber,
    CancelJob,
    Drain,
    GetJob,
    GetStatistics,
    ListJobs,
    RemoveSubscriber,
    StartJob,
    SubscribeCamera,
    SubscribeJob,
    SupervisorMessage,
    UnsubscribeCamera,
)
from actors.records import JobRecord, SourceRecord
from collector.config import Settings
from collector.errors import NotFound, RequestError
from collector.media.opener import Opener
from collector.params import CollectRequest, SourceSpec

log = logging.getLogger(__name__)

CameraKey = tuple[str, tuple[tuple[str, str], ...]]
# CameraStatistics counters that SupervisorStatistics sums over the process's life
_LIFETIME_COUNTERS = ("sessions", "failures", "packets", "bytes", "dropped_subscribers")


class Busy(RequestError):
    status = 503


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
    def __init__(self, settings: Settings, opener_for: Callable[[str], Opener]) -> None:
        self.settings, self.opener_for = settings, opener_for
        self.inbox, self._inbox = trio.open_memory_channel[SupervisorMessage](1024)
        self.cameras: dict[str, SourceSpec] = {}  # the registry of named cameras
        self._jobs: dict[str, _JobEntry] = {}
        self._cameras: dict[CameraKey, _CameraEntry] = {}
        self._stopped = dict.fromkeys(_LIFETIME_COUNTERS, 0)  # counts of stopped cameras
        self._writer_limiter = trio.CapacityLimiter(settings.writer_threads)
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started(self)
            with self._inbox:
                async for msg in self._inbox:
                    self._handle(msg)
            nursery.cancel_scope.cancel()

    # --- message handling (synchronous: every reply is send_nowait) ---------------------------

    def _handle(self, msg: SupervisorMessage) -> None:
        match msg:
            case StartJob(request=request, reply=reply):
                with reply:
                    reply.send_nowait(outcome.capture(self._start_job, request))
            case GetJob(job_id=job_id, reply=reply):
                with reply:
                    reply.send_nowait(outcome.capture(lambda: self._entry(job_id).record.view()))
            case ListJobs(status=status, limit=limit, before=before, reply=reply):
                with reply:
                    reply.send_nowait(outcome.capture(self._list_jobs, status, limit, before))
            case CancelJob(job_id=job_id, reply=reply):
                with reply:
                    reply.send_nowait(outcome.capture(self._cancel_job, job_id))
            case SubscribeJob(job_id=job_id, reply=reply):
                with reply:
                    reply.send_nowait(outcome.capture(lambda: self._entry(job_id).events.subscribe()))
            case SubscribeCamera():
                self._subscribe_camera(msg)
            case UnsubscribeCamera():
                self._unsubscribe_camera(msg)
            case GetStatistics(reply=reply):
                with reply:
                    reply.send_nowait(outcome.Value(self.statistics()))
            case Drain(reason=reason, reply=reply):
                assert self._nursery is not None
                self._nursery.start_soon(self._drain, reason, reply)
            case _:
                raise TypeError(f"supervisor got an unknown message {msg!r}")

    def _entry(self, job_id: str) -> _JobEntry:
        entry = self._jobs.get(job_id)
        if entry is None:
            raise NotFound("job_id", "job not found")
        return entry

    def _start_job(self, request: CollectRequest) -> dict[str, Any]:
        active = sum(1 for e in self._jobs.values() if e.record.active)
        if active >= self.settings.max_concurrent_jobs:
            raise Busy("jobs", f"too many running jobs ({active}); try again later")
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
        log_ = events.EventLog(self.settings.ws_buffer)
        job = Job(
            record,
            request,
            supervisor=self.inbox,
            log_=log_,
            folder=Path(self.settings.data_dir) / "jobs" / job_id,
            writer_limiter=self._writer_limiter,
            subscriber_buffer=self.settings.subscriber_buffer,
        )
        self._jobs[job_id] = _JobEntry(record, log_, job)
        assert self._nursery is not None
        self._nursery.start_soon(job.run)
        return record.view()

    def _list_jobs(self, status: str | None, limit: int, before: str | None) -> dict[str, Any]:
        ids = list(reversed(self._jobs))  # newest first
        if before is not None:
            if before not in self._jobs:
                raise RequestError("before", "unknown cursor")
            ids = ids[ids.index(before) + 1 :]
        rows = [self._jobs[i].record for i in ids]
        if status is not None:
            rows = [r for r in rows if r.status == status]
        page = rows[:limit]
        cursor = page[-1].id if len(rows) > limit else None
        return {"jobs": [r.summary() for r in page], "next": cursor}

    def _cancel_job(self, job_id: str) -> dict[str, Any]:
        entry = self._entry(job_id)
        if entry.record.active:
            entry.actor.stop("cancelled")
        return entry.record.summary()

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
        entry.camera.inbox.send_nowait(AddSubscriber(subscriber=msg.subscriber, channel=msg.channel))

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
        by_status: dict[str, int] = {}
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

    async def _drain(self, reason: str, reply: trio.MemorySendChannel[outcome.Outcome[Any]]) -> None:
        running = [e for e in self._jobs.values() if e.record.active]
        log.info("supervisor.drain jobs=%d reason=%s", len(running), reason)
        for entry in running:
            entry.actor.stop(reason)
        with trio.move_on_after(self.settings.graceful_timeout_s):
            for entry in running:
                await entry.actor.finished.wait()
        with reply:
            reply.send_nowait(outcome.Value(len(running)))
