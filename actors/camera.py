"""The camera actor: owns the one upstream session for a source URL and fans packets out.

Every job recording the same URL (with the same options) subscribes to the same camera, so two jobs
share one connection. Fan-out uses `send_nowait` into each subscriber's bounded channel: a job that
falls behind a live source by more than its buffer is dropped (its channel closed), never waited
for. A source that can wait (HTTP(S): a file, an HLS playlist; `packets_paced`) is read only as
fast as its slowest job records it instead, and the jobs that lent the camera their recorder
(actors/loan.py) have its batches muxed in the reading thread itself (`write_here`): they hear
`Recorded` instead of `Packets`, and when every job did, the reading thread does not wait for
the trio thread at all (`packets_written`). Every other event sent to a job that lent its
recorder takes the loan back first.

The camera reconnects on its own with exponential backoff while it has subscribers; each subscriber
hears `SourceDown` with the count of consecutive failures and decides by its own retry policy
when to give up. The supervisor closes the camera's inbox when its last subscriber leaves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

import trio

from actors.backoff import RetryPolicy, backoff_delays
from actors.loan import RecorderLoan
from actors.messages import (
    AddSubscriber,
    CameraEvent,
    CameraMessage,
    Packets,
    Recorded,
    RemoveSubscriber,
    SourceDown,
)
from collector.errors import SourceEnded, SourceError, SourceUnavailable
from collector.media.opener import FileIdentity, HandedOver, Opener, Written
from collector.media.packets import MediaPacket, SessionInfo, StreamInfo
from collector.urls import redact

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraStatistics:
    url: str  # redacted
    subscribers: int
    sessions: int
    failures: int
    packets: int
    bytes: int
    dropped_subscribers: int
    connected: bool  # a session is open now


class Camera:
    def __init__(
        self,
        url: str,
        options: dict[str, str],
        opener: Opener,
        policy: RetryPolicy,
        *,
        stall_timeout_s: float = 10.0,
    ) -> None:
        self.url, self.options, self.opener, self.policy = url, options, opener, policy
        self.stall_timeout_s = stall_timeout_s
        self._last_activity = 0.0
        self.inbox, self._inbox = trio.open_memory_channel[CameraMessage](256)
        self._subscribers: dict[int, trio.MemorySendChannel[CameraEvent]] = {}
        self._loans: dict[int, RecorderLoan] = {}
        # What the reading thread sees of them: rebound (never changed) in the trio thread.
        self._lending = _Lending(loans=(), everyone=True)
        self._session: SessionInfo | None = None
        self._sessions = self._failures = self._packets = self._bytes = self._dropped = 0
        self._descriptions = 0  # sessions and their new descriptions: SessionInfo.session
        self._got_video = False
        # A file or a live playlist: which, and what its subscribers were handed of it
        # (collector/media/rereads.py; read and rebound, never changed, in the reading
        # threads only, under the lock: see `_SessionSink`)
        self._file_read: tuple[FileIdentity, HandedOver] | None = None
        self._file_lock = threading.Lock()  # an abandoned session's thread may still add to it
        self._delivering = False  # waiting for a job to take a paced batch (not a stall)
        self._paced = False  # the current session's source waits for its jobs (packets_paced)
        # set by the first subscriber: connect only when someone listens
        self._wanted = trio.Event()

    def statistics(self) -> CameraStatistics:
        return CameraStatistics(
            url=redact(self.url),
            subscribers=len(self._subscribers),
            sessions=self._sessions,
            failures=self._failures,
            packets=self._packets,
            bytes=self._bytes,
            dropped_subscribers=self._dropped,
            connected=self._session is not None,
        )

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._stream_forever)
            with self._inbox:
                async for msg in self._inbox:
                    self._handle(msg)
            nursery.cancel_scope.cancel()
        for channel in self._subscribers.values():
            channel.close()
        self._subscribers.clear()
        self._loans.clear()
        self._lending = _Lending(loans=(), everyone=True)

    def _handle(self, msg: CameraMessage) -> None:
        match msg:
            case AddSubscriber(subscriber=sid, channel=channel, loan=loan):
                self._subscribers[sid] = channel
                if loan is not None:
                    self._loans[sid] = loan
                self._lenders_changed()
                self._wanted.set()
                if self._session is not None:  # to a subscriber it is its first session
                    self._send(sid, channel, replace(self._session, reconfigured=False))
            case RemoveSubscriber(subscriber=sid):
                removed = self._drop(sid)
                if removed is not None:
                    removed.close()
            case _:
                raise TypeError(f"camera got an unknown message {msg!r}")

    def _drop(self, sid: int) -> trio.MemorySendChannel[CameraEvent] | None:
        self._loans.pop(sid, None)
        channel = self._subscribers.pop(sid, None)
        self._lenders_changed()
        return channel

    def _lenders_changed(self) -> None:
        everyone = len(self._loans) == len(self._subscribers)
        self._lending = _Lending(loans=tuple(self._loans.items()), everyone=everyone)

    async def _stream_forever(self) -> None:
        await self._wanted.wait()
        delays = backoff_delays(self.policy)
        failures = 0
        while True:
            started = trio.current_time()
            self._got_video = self._paced = False
            error = await self._run_session()
            self._session = None
            if self._got_video and trio.current_time() - started >= self.policy.stable_after:
                failures, delays = 0, backoff_delays(self.policy)
            failures += 1
            self._failures += 1
            delay = next(delays)
            log.warning(
                "camera.down url=%s reason=%s failures=%d retry_in=%.1fs error=%s",
                redact(self.url), error.reason, failures, delay, error,
            )
            down = SourceDown(error=error, failures=failures)
            if self._paced:  # its jobs may still be behind: they hear of the end after the packets
                await self._deliver(down)
            else:
                self._broadcast(down)
            await trio.sleep(delay)

    async def _run_session(self) -> SourceError:
        """One session, until it fails, ends, or delivers nothing for `stall_timeout_s`.

        A stall counts as a failure even while the connection stays open (an RTSP server keeps
        sending RTCP when the camera's encoder hangs): the watchdog cancels the session.
        """
        self._last_activity = trio.current_time()
        sink = _SessionSink(self)
        with trio.CancelScope() as session_scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_stall, session_scope)
                try:
                    await self.opener.run(self.url, self.options, sink)
                    error: SourceError = SourceEnded(f"stream ended at {redact(self.url)}")
                except SourceError as exc:
                    error = exc
                except Exception as exc:  # a bug of ours, or a foreign error nobody translated:
                    # this camera's session fails (and is retried) rather than the whole process
                    log.exception("camera.session_crashed url=%s", redact(self.url))
                    error = SourceError(f"internal error: {redact(str(exc))}", reason="internal")
                finally:
                    sink.active = False  # an abandoned worker thread can no longer reach us
                nursery.cancel_scope.cancel()
        if session_scope.cancelled_caught:
            error = SourceUnavailable(
                f"stalled: no packets for {self.stall_timeout_s:g} s from {redact(self.url)}",
                reason="stall",
            )
        return error

    async def _watch_stall(self, session_scope: trio.CancelScope) -> None:
        while True:
            deadline = self._last_activity + self.stall_timeout_s
            if trio.current_time() >= deadline and self._delivering:
                self._last_activity = trio.current_time()  # waiting on a job is not a stall
            elif trio.current_time() >= deadline:
                session_scope.cancel()
                return
            await trio.sleep_until(deadline)

    # PacketSink, through _SessionSink: called by the opener in the trio thread
    def opened(self, streams: tuple[StreamInfo, ...], reconfigured: bool = False,
               max_jump: float | None = None) -> int:
        """A session's description: a new one numbers it anew for the subscribers (they close
        their segments), but only a new connection counts in `sessions`."""
        self._describe(streams, reconfigured, max_jump)
        assert self._session is not None
        self._broadcast(self._session)
        return self._descriptions

    async def opened_paced(self, streams: tuple[StreamInfo, ...]) -> int:
        """The same session described anew, for a source that can wait: a subscriber without
        room (catching up) is waited for, not dropped."""
        self._describe(streams, True)
        assert self._session is not None
        self._paced = True
        await self._deliver(self._session)
        return self._descriptions

    def _describe(self, streams: tuple[StreamInfo, ...], reconfigured: bool,
                  max_jump: float | None = None) -> None:
        self._descriptions += 1
        if not reconfigured:
            self._sessions += 1
        elif self._session is not None:  # the same connection: its kind of source too
            max_jump = self._session.max_jump
        self._session = SessionInfo(session=self._descriptions, streams=streams,
                                    reconfigured=reconfigured, max_jump=max_jump)
        log.info("camera.open url=%s session=%d reconfigured=%s streams=%s", redact(self.url),
                 self._descriptions, reconfigured, ",".join(f"{s.kind}:{s.codec}" for s in streams))

    def packets(self, batch: Sequence[MediaPacket]) -> None:
        if self._count(len(batch), sum(len(p.data) for p in batch)):
            assert self._session is not None
            self._broadcast(Packets(session=self._session.session, batch=tuple(batch)))

    async def packets_paced(self, batch: Sequence[MediaPacket], written: Written | None = None,
                            ) -> None:
        nbytes = sum(len(p.data) for p in batch) if written is None else written.bytes
        if self._count(len(batch), nbytes):
            assert self._session is not None
            self._paced = True
            event = Packets(session=self._session.session, batch=tuple(batch))
            await self._deliver(event, written.subscribers if written else frozenset())

    def write_here(self, batch: Sequence[MediaPacket], session: int) -> Written:
        """Called in the reading thread: every recorder lent for `session` muxes `batch`."""
        lending = self._lending  # one snapshot: the trio thread may rebind it meanwhile
        wrote = frozenset(sid for sid, loan in lending.loans if loan.write_here(batch, session))
        everyone = lending.everyone and len(wrote) == len(lending.loans)
        return Written(subscribers=wrote, everyone=everyone, packets=len(batch),
                       bytes=sum(len(p.data) for p in batch))

    def packets_written(self, written: Written) -> None:
        """Every subscriber had muxed the batch (as of `write_here`'s snapshot; one that joined
        since starts with a later batch): count it and tell them, never waiting. A channel that
        is full holds an event already, and any event makes its job collect what its loan
        wrote, so no `Recorded` is needed then."""
        if not self._count(written.packets, written.bytes):
            return
        assert self._session is not None
        self._paced = True
        event = Recorded(session=self._session.session)
        for sid in written.subscribers:
            if (channel := self._subscribers.get(sid)) is None:
                continue
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._drop(sid)

    def _count(self, packets: int, nbytes: int) -> bool:
        """Note a batch of the current session (False: there is none)."""
        if self._session is None:
            return False
        self._got_video = True
        self._last_activity = trio.current_time()
        self._packets += packets
        self._bytes += nbytes
        return True

    async def _deliver(self, event: CameraEvent, written: frozenset[int] = frozenset()) -> None:
        """Hand `event` to every subscriber, waiting for room (paced sources only); those in
        `written` muxed its batch already (`write_here`) and hear `Recorded` instead."""
        self._delivering = True
        try:
            for sid, channel in list(self._subscribers.items()):
                if sid in written:
                    assert isinstance(event, Packets)
                    mine: CameraEvent = Recorded(session=event.session)
                else:
                    mine = self._held(sid, event)
                try:
                    await channel.send(mine)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._drop(sid)
        finally:
            self._delivering = False
            self._last_activity = trio.current_time()

    def _broadcast(self, event: CameraEvent) -> None:
        for sid, channel in list(self._subscribers.items()):
            self._send(sid, channel, event)

    def _send(
        self, sid: int, channel: trio.MemorySendChannel[CameraEvent], event: CameraEvent
    ) -> None:
        try:
            channel.send_nowait(self._held(sid, event))
        except trio.WouldBlock:
            log.warning("camera.lagged url=%s subscriber=%d dropped", redact(self.url), sid)
            self._dropped += 1
            self._drop(sid)
            channel.close()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._drop(sid)

    def _held(self, sid: int, event: CameraEvent) -> CameraEvent:
        """`event`, for a subscriber to handle with its own recorder: take back a loan first."""
        if (loan := self._loans.get(sid)) is not None:
            loan.hold()
        return event


class _SessionSink:
    """The sink one session writes to; dead once that session is over."""

    def __init__(self, camera: Camera) -> None:
        self.camera, self.active = camera, True
        self.session: int | None = None
        self._loans_wrote = False  # the last batch went into a loan: its job will have it

    def opened(self, streams: tuple[StreamInfo, ...], reconfigured: bool = False,
               max_jump: float | None = None) -> None:
        if self.active:
            self.session = self.camera.opened(streams, reconfigured, max_jump)

    async def opened_paced(self, streams: tuple[StreamInfo, ...]) -> None:
        if self.active:
            self.session = await self.camera.opened_paced(streams)

    def packets(self, batch: Sequence[MediaPacket]) -> None:
        if self.active:
            self.camera.packets(batch)

    async def packets_paced(self, batch: Sequence[MediaPacket], written: Written | None = None,
                            ) -> None:
        if self.active:
            await self.camera.packets_paced(batch, written)

    def write_here(self, batch: Sequence[MediaPacket]) -> Written:
        # Called in the reading thread: `active` may turn False right after it is read, and then
        # what the loans wrote waits in them for their jobs (RecorderLoan.take); a loan its job
        # lent again after hearing that this session ended refuses the batch (it names `session`).
        if self.active and self.session is not None:
            written = self.camera.write_here(batch, self.session)
            self._loans_wrote = bool(written.subscribers)
            return written
        self._loans_wrote = False
        return Written(subscribers=frozenset(), everyone=False, packets=len(batch), bytes=0)

    def packets_written(self, written: Written) -> None:
        if self.active:
            self.camera.packets_written(written)

    # Called in the reading thread, one session at a time: an abandoned session's thread, no
    # longer active, neither reads nor records what was handed over.
    def read_before(self, file: FileIdentity) -> HandedOver | None:
        if not self.active:
            return None
        with self.camera._file_lock:
            known = self.camera._file_read
            if known is None or known[0] != file:
                self.camera._file_read = (file, HandedOver({}, {}))
                return None
            return known[1] if known[1].last else None

    def reading(self) -> None:  # in the trio thread, like the rest
        if self.active:
            self.camera._last_activity = trio.current_time()

    def handed_over(self, file: FileIdentity, batch: HandedOver) -> None:
        # (a batch a loan took just as the session ended reaches its job all the same)
        if not (self.active or self._loans_wrote):
            return
        with self.camera._file_lock:
            known = self.camera._file_read
            if known is not None and known[0] == file:
                self.camera._file_read = (file, known[1].then(batch))


@dataclass(frozen=True, slots=True, kw_only=True)
class _Lending:
    """The subscribers' loans as a camera's reading thread sees them (`Camera.write_here`)."""

    loans: tuple[tuple[int, RecorderLoan], ...]
    everyone: bool  # every subscriber lent its recorder
