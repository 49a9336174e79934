"""The job actor: records each of its sources from their cameras, counts steps, publishes events.

One task per source drains that source's camera subscription. Segment files are written by a
`Recorder` in the trio thread, a batch at a time (muxing only fills the page cache), or, for a
paced source (a file or playlist over HTTP), in the camera's reading thread, to which the source
lends its recorder between events (actors/loan.py); either way the source task announces what
was written. Closed segments are fsync'ed in a worker thread, and a step is announced only after
the segment file that completed it is closed and fsync'ed.

Final status: `completed` when every source recorded its full duration; `failed` when any source
failed (the error names each failed source; the others' segments stay listed); `cancelled` on
DELETE; `interrupted` on shutdown.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import outcome
import trio

from actors import events
from actors.loan import RecorderLoan
from actors.messages import (
    CameraEvent,
    Packets,
    Recorded,
    SourceDown,
    SubscribeCamera,
    SupervisorMessage,
    UnsubscribeCamera,
    queued,
    tell_even_if_cancelled,
)
from actors.records import JobRecord, SourceRecord
from collector.errors import CollectorError, SegmentError, SourceEnded, UnsupportedSource
from collector.media.cutting import CutPlan
from collector.media.packets import MediaPacket, SessionInfo
from collector.media.recorder import Progress, Recorder
from collector.media.segments import make_durable
from collector.params import CollectRequest
from collector.urls import redact

log = logging.getLogger(__name__)

_subscriber_ids = itertools.count(1)
CLOSE_GRACE_S = 10.0  # how long closing a segment may take when a job is stopped
UNSUBSCRIBE_PATIENCE_S = 5.0  # how long a job's end waits for room in a full supervisor inbox


class SourceFailed(Exception):
    """A source of the job has failed; `message` goes to its errors and the job's error text,
    which names the source (prefixed here unless the message names it itself)."""

    def __init__(self, message: str, *, names_source: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.names_source = names_source


class Job:
    def __init__(
        self,
        record: JobRecord,
        request: CollectRequest,
        *,
        supervisor: trio.MemorySendChannel[SupervisorMessage],
        log_: events.EventLog,
        folder: Path,
        writer_limiter: trio.CapacityLimiter,
        subscriber_buffer: int,
        save: Callable[..., None] = lambda *rows: None,
        segment_turns: trio.Lock | None = None,
    ) -> None:
        self.record, self.request, self.supervisor = record, request, supervisor
        self.save = save  # hands rows to the database writer, never blocks
        self.events, self.folder = log_, folder
        self.writer_limiter, self.subscriber_buffer = writer_limiter, subscriber_buffer
        # Shared by every job: segment files open and close in turn (`_write`)
        self.segment_turns = segment_turns or trio.Lock()
        self.cancel_scope = trio.CancelScope()
        self.stop_status: str | None = None  # cancelled | interrupted | failed once asked to stop
        self.stop_reason = ""
        self.finished = trio.Event()
        self._streaks: dict[str, int] = {}  # per source: consecutive failed sessions it saw

    def stop(self, status: str, reason: str = "") -> None:
        """Ask the job to stop: segments are closed cleanly, then it ends with `status`."""
        if self.stop_status is None:
            self.stop_status, self.stop_reason = status, reason or status
        self.cancel_scope.cancel()

    def _save(self, source: SourceRecord | None = None) -> None:
        self.save(*self.record.rows(source))

    async def run(self) -> None:
        rec = self.record
        try:
            rec.status, rec.started_at = "running", time.time()
            self._save()
            self.events.publish(events.started(rec.id))
            log.info("job.start job=%s sources=%d steps=%d", rec.id, len(rec.sources), rec.total)
            failures: list[str] = []
            with self.cancel_scope:
                async with trio.open_nursery() as nursery:
                    for src in rec.sources:
                        announcer = _Announcer(self, src)
                        nursery.start_soon(announcer.run)
                        nursery.start_soon(self._source_task, src, failures, announcer)
            self._finish(failures)
        finally:
            if rec.active:  # crashed: never leave a job looking alive
                rec.status, rec.error = "failed", rec.error or "internal error"
                rec.finished_at = time.time()
                self._save()
                self.events.publish(events.error(rec.id, rec.error))
            if not self.events.closed:
                self.events.close()
            self.finished.set()

    def _finish(self, failures: list[str]) -> None:
        rec = self.record
        rec.finished_at = time.time()
        if self.stop_status == "interrupted":
            rec.status, rec.error = "interrupted", self.stop_reason
            event = events.interrupted(rec.id, self.stop_reason)
        elif self.stop_status is not None:  # cancelled, or failed (e.g. the disk guard)
            rec.status, rec.error = self.stop_status, self.stop_reason
            event = events.error(rec.id, self.stop_reason)
        elif failures:
            rec.status, rec.error = "failed", "; ".join(failures)
            event = events.error(rec.id, rec.error)
        else:
            rec.status = "completed"
            event = events.completed(rec.id)
        self._save()
        self.events.publish(event)
        log.info(
            "job.end job=%s status=%s steps=%d/%d segments=%d error=%s",
            rec.id, rec.status, rec.step, rec.total,
            sum(len(s.segments) for s in rec.sources), rec.error,
        )

    async def _source_task(self, src: SourceRecord, failures: list[str],
                           announcer: _Announcer) -> None:
        plan = CutPlan(duration=self.request.duration, segment_seconds=self.request.segment_seconds)
        folder = self.folder / src.name
        loan = RecorderLoan(Recorder(folder, self.request.format, plan))
        src.status = "running"
        try:
            await self._record(src, loan, announcer)
            await announcer.caught_up()
            if announcer.failure is not None:
                raise announcer.failure
            src.status = "completed"
        except SourceFailed as exc:
            src.status = "failed"
            src.errors.append(exc.message)
            failures.append(exc.message if exc.names_source
                            else f"source {src.name!r}: {exc.message}")
        except trio.Cancelled:
            src.status = self.stop_status or "cancelled"
            raise
        finally:
            # A disk error from here on (the open segment cannot be finished, say) is noted on
            # this source; raised, it would crash the job, the supervisor and every other job.
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE_S):
                with _noted(src):  # the camera's thread may be writing a batch with the recorder
                    self._written(announcer, await loan.take())
                await announcer.caught_up()
                closing = announcer.take_leftovers()  # it was cancelled: announce them here
                with _noted(src):  # closes the file even if the segment is lost
                    closing.append(self._recorded(loan.recorder.stop, "stopped"))
                with _noted(src):
                    for progress in closing:
                        self._apply(src, await self._durable(progress))
            announcer.close()

    async def _record(self, src: SourceRecord, loan: RecorderLoan, announcer: _Announcer) -> None:
        sid = next(_subscriber_ids)
        options = tuple(sorted(src.options.items()))
        send, receive = trio.open_memory_channel[CameraEvent](self.subscriber_buffer)
        await self.supervisor.send(
            SubscribeCamera(
                subscriber=sid, url=src.url, options=options, channel=send,
                retry=self.request.retry, loan=loan,
            )
        )
        try:
            with receive:
                async for event in receive:
                    if await self._on_camera_event(src, loan, announcer, event):
                        return
                    if announcer.failure is not None:
                        raise announcer.failure
            raise SourceFailed(f"source {src.name!r} fell behind its camera and was dropped",
                               names_source=True)
        finally:
            # Lost, it would leave the camera recording for nobody: a full supervisor inbox is
            # waited for, even by a cancelled job, for a while
            if not await tell_even_if_cancelled(
                self.supervisor, UnsubscribeCamera(subscriber=sid, url=src.url, options=options),
                patience_s=UNSUBSCRIBE_PATIENCE_S,
            ):
                log.warning("job.unsubscribe_lost job=%s source=%s", self.record.id, src.name)

    async def _on_camera_event(self, src: SourceRecord, loan: RecorderLoan,
                               announcer: _Announcer, event: CameraEvent) -> bool:
        """Apply one camera event; True when the source has recorded all it should."""
        if isinstance(event, Recorded):  # the camera's thread muxed batches with our recorder
            return self._written(announcer, loan.results())
        # Any other event is for us to handle with the recorder: the camera stopped lending it
        # when it sent the event; take it back (after a batch its thread may still be writing).
        if self._written(announcer, await loan.take()):
            return True
        recorder = loan.recorder
        match event:
            case SessionInfo():
                if not event.reconfigured:  # a new connection, not new codec parameters
                    src.attempts += 1
                    if src.gaps and src.gaps[-1]["end"] is None:
                        src.gaps[-1]["end"] = time.time()
                progress = self._recorded(recorder.new_session, event)
            case Packets():
                progress = await self._write(recorder, announcer, event.batch)
            case SourceDown(error=error) if ((isinstance(error, SourceEnded) and error.finished)
                                             or recorder.plan.holds_duration()):
                # A file read to its end, or a session that ended after the last frame the
                # duration needs, before the one that would have finished it (it waited for the
                # next session, and failed if none came): the source is done if it holds the
                # duration, as a file's end decides
                await _caught_up(announcer)
                progress = await self._durable(self._recorded(recorder.source_finished))
                self._apply(src, progress)
                if progress.done:
                    # Steps no closed segment completed (the last segment had already been
                    # closed by a timestamp jump when the file's end made the video enough)
                    # go out with the last segment
                    if src.segments:
                        self._announce_steps(src, src.steps_total)
                    return True
                raise SourceFailed(
                    f"source {src.name!r} ({redact(src.url)}) ended after "
                    f"{recorder.plan.recorded:.2f} s of video, {self.request.duration:g} s were "
                    f"asked for: {redact(str(error))} (a file is read once)", names_source=True,
                )
            case SourceDown(error=UnsupportedSource() as error) if src.attempts == 0:
                # No video, or a codec no segment can hold, before any session opened: trying
                # again reads the same (a file 5 times over, with backoff between), so the
                # source fails at once. (Once it has recorded, such an answer may be passing,
                # a camera rebooting: retried as any failure.)
                src.failures += 1
                src.errors.append(redact(str(error)))
                src.gaps.append({"start": time.time(), "end": None, "reason": error.reason})
                raise SourceFailed(
                    f"source {src.name!r} ({redact(src.url)}) cannot be recorded: "
                    f"{redact(str(error))}", names_source=True,
                )
            case SourceDown(error=error, failures=camera_failures):
                # The camera counts its consecutive failures since its last stable session; a
                # job that joined it mid-way counts only those it saw (never more than that).
                failures = min(camera_failures, self._streaks.get(src.name, 0) + 1)
                self._streaks[src.name] = failures
                src.failures += 1
                message = f"{error} (attempt {failures})"
                src.errors.append(redact(message))
                await announcer.caught_up()  # segments before the outage are announced first
                progress = await self._durable(self._recorded(recorder.stop, "discontinuity"))
                if not src.gaps or src.gaps[-1]["end"] is not None:
                    src.gaps.append({"start": time.time(), "end": None, "reason": error.reason})
                self._apply(src, progress)
                self._save(src)
                self.events.publish(events.retry(
                    self.record.id, src.name, error.reason, failures, redact(str(error))
                ))
                if failures >= self.request.retry.max_attempts:
                    raise SourceFailed(
                        f"source {src.name!r} ({redact(src.url)}) failed after {failures} "
                        f"attempts: {redact(str(error))}", names_source=True,
                    )
                loan.handled(None)  # lent again for the next session, once we have heard of it
                return False
            case _:
                raise TypeError(f"job got an unknown camera event {event!r}")
        if progress.segments or progress.skipped:  # fsync'ed and announced by the announcer
            announcer.put(progress)  # while we keep muxing
        if progress.done:
            return True
        # Lends the recorder again, for this session's batches, once every event sent so far is
        # handled.
        loan.handled(event.session)
        return False

    def _written(self, announcer: _Announcer, results: list[outcome.Outcome[Progress]]) -> bool:
        """Take in what the camera's thread returned from muxing with our lent recorder, as if we
        had muxed it here; True when the source has recorded all it should."""
        done = False
        for result in results:
            progress = self._recorded(result.unwrap)
            if progress.segments or progress.skipped:
                announcer.put(progress)
            done = done or progress.done
        return done

    async def _write(self, recorder: Recorder, announcer: _Announcer,
                     batch: Sequence[MediaPacket]) -> Progress:
        """Mux a batch, taking turns with the other jobs to open and close segment files.

        A segment change costs ~1-2 ms, a hundred times a packet, and cameras fed by one server
        (or started together) cut within the same few hundred ms. Done where they fall, the cuts
        of ten jobs made one scheduler pass of 20-40 ms, and a request waiting behind such
        passes at every step took 160-390 ms (measured at 100 cameras). Taking turns through one
        lock, each pass does at most one segment change and runs whatever else is ready beside
        it; the muxing between changes stays where it was.
        """
        progress = self._recorded(recorder.write, batch, pause=True)
        while progress.paused:
            if progress.segments or progress.skipped:
                announcer.put(progress)
            async with self.segment_turns:
                progress = self._recorded(recorder.resume)
        return progress

    def _recorded(self, fn: Callable[..., Progress], *args: object, **kwargs: object) -> Progress:
        """Run a Recorder method (muxing, in this thread) with its errors made the source's."""
        try:
            return fn(*args, **kwargs)
        except SegmentError as exc:
            raise SourceFailed(f"cannot write segments: {exc}") from None
        except CollectorError as exc:
            raise SourceFailed(str(exc)) from None

    async def _durable(self, progress: Progress) -> Progress:
        """fsync the segments `progress` closed, in a worker thread, before anyone hears of them."""
        await self._make_durable([progress])
        return progress

    async def _make_durable(self, progress: list[Progress]) -> None:
        """fsync the segments closed by every one of `progress`, in one worker-thread call."""
        paths = [seg.path for p in progress for seg in p.segments]
        if paths:
            try:
                await trio.to_thread.run_sync(make_durable, paths, limiter=self.writer_limiter)
            except SegmentError as exc:
                raise SourceFailed(f"cannot write segments: {exc}") from None

    def _announce_steps(self, src: SourceRecord, upto: int) -> None:
        """Announce `src`'s steps up to `upto`, each with its last segment."""
        rec = self.record
        while src.steps_done < upto:
            src.steps_done += 1
            rec.step += 1
            self._save(src)
            self.events.publish(events.progress(
                rec.id, rec.step, rec.total, source=src.name, segment=src.segments[-1],
            ))

    def _apply(self, src: SourceRecord, progress: Progress) -> None:
        """List each closed (and fsync'ed) segment, then announce the steps it completed, each
        with that segment."""
        rec = self.record
        index = rec.sources.index(src)
        for seg, steps in zip(progress.segments, progress.steps, strict=True):
            src.add_segment(seg)
            self.save(src.segment_row(rec.id, index))
            log.info(
                "segment.closed job=%s source=%s index=%d frames=%d duration=%.3f bytes=%d"
                " reason=%s",
                rec.id, src.name, seg.index, seg.frames, seg.duration, seg.bytes, seg.reason,
            )
            self._announce_steps(src, steps)
        for seconds in progress.skipped:
            # Media the source skipped within a session (a live playlist's segment its origin
            # did not serve), not counted as recorded: a gap of that many seconds of media,
            # listed when the segment before it is; when that media would have come is unknown
            # (the reader may be well behind the live edge), so the gap has no length in time
            now = time.time()
            src.gaps.append({"start": now, "end": now, "reason": "skipped",
                             "seconds": round(seconds, 3)})
            log.warning("source.skipped job=%s source=%s seconds=%.3f", rec.id, src.name, seconds)
            self._save(src)


async def _caught_up(announcer: _Announcer) -> None:
    """Before a source finishes: every segment closed so far announced, or its failure raised
    (a segment that could not be made durable is not followed by the last steps)."""
    await announcer.caught_up()
    if announcer.failure is not None:
        raise announcer.failure


@contextlib.contextmanager
def _noted(src: SourceRecord) -> Iterator[None]:
    """A source's failure while it is being closed: noted among its errors, not raised."""
    try:
        yield
    except SourceFailed as exc:
        src.errors.append(exc.message)


class _Announcer:
    """Makes one source's closed segments durable and announces their steps, in order, in a task
    of its own, so that the fsync of a closed segment never holds up muxing the next one.

    The source task `put`s every Progress that closed segments and waits for `caught_up()` where
    order matters (before an outage's retry event, before the source ends). If the announcer is
    cancelled (the job is stopped), what it had not announced yet is handed back by
    `take_leftovers()`. What was put while it waited on the disk is made durable together, in one
    worker-thread call (muxing in the camera's thread closes segments in bursts).
    """

    def __init__(self, job: Job, src: SourceRecord) -> None:
        self.job, self.src = job, src
        self._send, self._receive = trio.open_memory_channel[Progress | trio.Event](math.inf)
        self.failure: SourceFailed | None = None
        self._stopped = False
        self._leftovers: list[Progress] = []

    def put(self, progress: Progress) -> None:
        self._send.send_nowait(progress)

    async def caught_up(self) -> None:
        """Wait until everything put so far is announced (at once if the announcer is gone)."""
        if self._stopped:
            return
        done = trio.Event()
        self._send.send_nowait(done)
        await done.wait()

    def take_leftovers(self) -> list[Progress]:
        leftovers, self._leftovers = self._leftovers, []
        return leftovers + [p for p in self._drain() if isinstance(p, Progress)]

    def close(self) -> None:
        self._send.close()

    async def run(self) -> None:
        pending: list[Progress | trio.Event] = []
        try:
            async for first in self._receive:
                pending = [first, *queued(self._receive)]
                while pending:
                    if isinstance(head := pending[0], trio.Event):
                        del pending[0]
                        head.set()
                        continue
                    group: list[Progress] = []
                    for item in pending:
                        if not isinstance(item, Progress):
                            break
                        group.append(item)
                    if self.failure is None:
                        try:
                            await self.job._make_durable(group)
                            for progress in group:
                                self.job._apply(self.src, progress)
                        except SourceFailed as exc:
                            self.failure = exc  # the source task raises it at its next event
                    del pending[: len(group)]
        finally:
            self._stopped = True
            self._leftovers += [p for p in pending + self._drain() if isinstance(p, Progress)]
            for item in pending:
                if isinstance(item, trio.Event):
                    item.set()  # nobody waits on a stopped announcer

    def _drain(self) -> list[Progress | trio.Event]:
        items = queued(self._receive)
        for item in items:
            if isinstance(item, trio.Event):
                item.set()  # nobody waits on a stopped announcer
        return items
