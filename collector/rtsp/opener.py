"""The `Opener` for RTSP cameras: native trio network I/O, PyAV only muxes what we hand it.

One session: connect (TCP, or TLS for `rtsps://`, see `tls`), set up (`session.start_session`; a
redirect answered to OPTIONS or DESCRIBE is followed on a new connection, see `redirects`), then
read in large batches at a modest rate: one read of whatever the kernel buffered
(`RtspConnection.receive_now`, without a trip through trio's scheduler), depacketize, hand the
batch to the sink, wait for the session's tick of the shared `Ticker` (`ticker`: sessions wake up
to ten at a time). A camera costs ~2.5 reads a second whatever its bitrate (a read that fills the
whole 256 KiB buffer is followed by another at once, so a camera above ~5 Mbit/s is drained rather
than throttled by TCP flow control). Each read costs ~0.15 ms of CPU besides its packets (task
switches to the camera and its jobs, the read, a batch per job): reading every 0.4 s instead of 0.2
s cut the CPU per camera by ~12 % at 50 cameras; recording does not mind the extra few hundred ms
of latency.

Timeouts live here, at the edge: connecting and every response are bounded by `io_timeout_s`; no
media packet for `stall_timeout_s` raises `SourceUnavailable(reason="stall")` even while the server
keeps sending RTCP or answering keep-alives (FFmpeg's socket timeout cannot see that).
Keep-alives (GET_PARAMETER when the server offers it, else OPTIONS) go out at half the session
timeout, from the same loop (it wakes every `batch_seconds` anyway); one answered 401 with a stale
Digest nonce goes out again at once with the new nonce, or the server would drop the session.
The server's own requests are answered from there too: 501, except a REDIRECT (`redirects`),
which hands over the media read before it and then ends the connection like a redirect answered
to DESCRIBE: `run()` goes on from the new URL, and the sink hears a new `opened`, as after any
reconnection, but no error.
The same loop sends each track an RTCP receiver report every `rtcp_interval_s` (`rtcp`).

Tracks start lined up by the PLAY response's RTP-Info; once every track's first RTCP sender report
has arrived they are lined up on the sender's wallclock instead (`sync`), which can leave a gap in
(or drop a little of) the audio once. Nothing waits for it: video flows from the first packet.

`sink.opened` describes the session before its first packet, and again (a new `StreamInfo` for
the track, the others unchanged) before the first packet under new parameter sets when the camera
changes them mid-stream (`tracks`: resolution, profile): subscribers start a new segment there,
whose extradata matches its frames.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
from collections import Counter
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

import trio

from collector.errors import SourceEnded, SourceError, SourceUnavailable, UnsupportedSource
from collector.media.opener import Opener, PacketSink
from collector.media.packets import MediaPacket, StreamInfo
from collector.rtsp import reads, rtcp
from collector.rtsp.auth import Authorizer, split_userinfo
from collector.rtsp.client import RECEIVE_BYTES, USER_AGENT, RtspConnection, status_error
from collector.rtsp.redirects import (
    DEFAULT_PORTS,
    REDIRECT,
    Redirected,
    answer_redirect,
    next_url,
)
from collector.rtsp.session import Session, start_session
from collector.rtsp.sync import ready_to_sync, sync_origins
from collector.rtsp.ticker import Requests, Ticker
from collector.rtsp.tls import (
    TlsStream,
    default_context,
    tls_error,
    unverified_context,
    verifies,
)
from collector.rtsp.wire import Event, ProtocolError, Request, Response
from collector.urls import redact

log = logging.getLogger(__name__)

BATCH_SECONDS = 0.4
PHASE_SECONDS = 0.02  # the Ticker's phases are this far apart (a phase's sessions wake together)
SESSIONS_PER_PHASE = 25  # sessions that wake in one round before another phase is used (Ticker)
SESSIONS_PER_PASS = 10  # of them, how many read in one scheduler pass (Ticker)
DEFER_SECONDS = 0.05  # how long a phase's reads wait for HTTP requests being answered (Ticker)
START_SECONDS, START_READ_SECONDS = 2.0, 0.1  # a new session reads every 0.1 s at first
MAX_PENDING_SECONDS = 10.0  # media buffered while waiting for in-band SPS/PPS before `opened`
MAX_RENEWALS = 2  # keep-alives sent again at once for a stale nonce, in a row
# A REDIRECT that ends a session which played media this long starts a new redirect chain: a
# server that moves its cameras now and then (or fails back) never exhausts MAX_REDIRECTS, while a
# loop of short sessions still ends with reason `redirect`.
CHAIN_RESET_SECONDS = 60.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class RtspStatistics:
    sessions: int
    redirects: int  # redirects followed (each a connection of its own)
    rtp_packets: int
    rtp_lost: int
    rtp_dropped: int  # duplicate or late packets
    units_dropped: int  # access units damaged by loss, never emitted
    resync_dropped: int  # audio units dropped when a sender report moved the clock back
    rtcp_packets: int
    rtcp_reports_sent: int  # our receiver reports, one per track every rtcp_interval_s
    skipped_bytes: int  # junk between frames
    bytes_received: int
    # SDP media not set up: a codec we do not read, or audio no muxer takes (session.Skipped)
    tracks_skipped: int


class RtspOpener:
    """Streams `rtsp://` and `rtsps://` URLs over TCP (interleaved RTP): H.264 or H.265 video
    (B-frames too), AAC or G.711 audio.

    Anything else (`rtsp_transport` udp/http/https) goes to `fallback` (the PyAV opener).
    """

    def __init__(
        self,
        *,
        io_timeout_s: float = 10.0,
        stall_timeout_s: float = 10.0,
        batch_seconds: float = BATCH_SECONDS,
        fallback: Opener | None = None,
        allowed_hosts: str = "",
        ssl_context: ssl.SSLContext | None = None,
        rtcp_interval_s: float = rtcp.INTERVAL_S,
        chain_reset_s: float = CHAIN_RESET_SECONDS,
        requests: Requests | None = None,
    ) -> None:
        self.fallback = fallback  # for what we do not read natively: UDP, HTTP tunnel
        self.allowed_hosts = allowed_hosts  # COLLECTOR_ALLOWED_HOSTS, for redirect targets
        # rtsps:// certificates are checked against this (None: the system's trust store)
        self.ssl_context = ssl_context
        self.io_timeout_s = io_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.batch_seconds = batch_seconds
        self.rtcp_interval_s = rtcp_interval_s  # receiver reports, per track
        self.chain_reset_s = chain_reset_s
        self._ticker = Ticker(batch_seconds, phases=max(1, round(batch_seconds / PHASE_SECONDS)),
                              per_phase=SESSIONS_PER_PHASE, requests=requests,
                              defer_s=DEFER_SECONDS, per_pass=SESSIONS_PER_PASS)
        self._finished: Counter[str] = Counter()
        self._running: set[_Running] = set()

    def statistics(self) -> RtspStatistics:
        """Totals over every session this opener ran, the running ones included."""
        totals = Counter(self._finished)
        for running in self._running:
            totals.update(running.counts())
        names = RtspStatistics.__dataclass_fields__
        return RtspStatistics(**{name: totals[name] for name in names})

    async def run(self, url: str, options: Mapping[str, str], sink: PacketSink) -> None:
        shown = redact(url)
        parts = urlsplit(url)
        native = parts.scheme.lower() in DEFAULT_PORTS
        if not native or options.get("rtsp_transport", "tcp") != "tcp":
            if self.fallback is not None:
                return await self.fallback.run(url, options, sink)
            raise UnsupportedSource(
                f"the native RTSP client reads rtsp:// and rtsps:// over TCP only ({shown})")
        visited = [url]
        while True:  # a redirect (redirects.py) means a new connection, maybe to another host
            try:
                return await self._run_url(visited[-1], options, sink)
            except Redirected as exc:  # a 3xx answer, or the server's REDIRECT while playing
                if not exc.followable:
                    raise
                if exc.played_s >= self.chain_reset_s:  # that chain worked: count afresh
                    visited = visited[-1:]
                visited.append(next_url(visited, exc.location, allowed_hosts=self.allowed_hosts,
                                        given=url))
                log.info("rtsp.redirect url=%s method=%s status=%s to=%s", redact(visited[-2]),
                         exc.method, exc.status or "-", redact(visited[-1]))

    async def _run_url(self, url: str, options: Mapping[str, str], sink: PacketSink) -> None:
        """One connection: set up, then stream until an error, the end, or a redirect."""
        shown = redact(url)
        parts = urlsplit(url)
        bare, user, password = split_userinfo(url)
        auth = Authorizer(user, password or "") if user is not None else None
        scheme = parts.scheme.lower()
        try:
            host, port = parts.hostname or "", parts.port or DEFAULT_PORTS[scheme]
        except ValueError:
            raise UnsupportedSource(f"bad port in {shown}") from None
        tls = None
        if scheme == "rtsps":
            tls = ((self.ssl_context or default_context()) if verifies(options)
                   else unverified_context())
        stream = await self._connect(host, port, tls, shown)
        conn = RtspConnection(stream, shown, auth, options.get("user_agent") or USER_AGENT)
        running = _Running(conn)
        self._running.add(running)
        ended = "stopped"
        try:
            try:
                running.session = await start_session(conn, bare, self._bounded)
                running.session.reports.interval_s = self.rtcp_interval_s
                log.info("rtsp.session url=%s tracks=%s", shown,
                         ",".join(t.media.encoding for t in running.session.tracks))
                for skipped in running.session.skipped:  # not set up: the camera never sends it
                    log.info("rtsp.track_skipped url=%s media=%d stream=%s reason=%s", shown,
                             skipped.position, skipped.stream, skipped.reason)
                phase = self._ticker.join()
                try:
                    await self._stream(conn, running.session, sink, phase)
                finally:
                    self._ticker.leave(phase)
            except trio.TooSlowError:
                raise SourceUnavailable(f"timed out waiting for {shown}",
                                        reason="timeout") from None
            except EOFError:
                raise SourceEnded(f"connection closed by the server at {shown}") from None
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                text = redact(str(exc)) or type(exc).__name__
                raise SourceUnavailable(f"{text} ({shown})", reason="os") from None
            except ProtocolError as exc:
                raise SourceUnavailable(f"RTSP protocol error: {exc} ({shown})",
                                        reason="protocol") from None
        except SourceError as exc:
            ended = exc.reason
            running.redirected = isinstance(exc, Redirected) and exc.followable
            raise
        finally:
            self._running.discard(running)
            counts = running.counts()
            self._finished.update(counts)
            log.info("rtsp.session.end url=%s reason=%s rtp=%d lost=%d dropped_units=%d bytes=%d",
                     shown, ended, counts["rtp_packets"], counts["rtp_lost"],
                     counts["units_dropped"], counts["bytes_received"])
            session = running.session
            await conn.aclose_with_teardown(session.url if session else bare)

    async def _connect(self, host: str, port: int, tls: ssl.SSLContext | None,
                       shown: str) -> trio.abc.Stream:
        """TCP, and the TLS handshake for rtsps, within io_timeout_s; errors in our terms."""
        doing = "connecting to"
        try:
            with trio.fail_after(self.io_timeout_s):
                tcp = await trio.open_tcp_stream(host, port)
                if tls is None:
                    return tcp
                doing = "in the TLS handshake with"
                stream = TlsStream(tcp, tls, host, RECEIVE_BYTES)
                try:
                    await stream.do_handshake()
                except BaseException:
                    await trio.aclose_forcefully(tcp)
                    raise
                return stream
        except trio.TooSlowError:
            raise SourceUnavailable(f"timed out {doing} {shown}", reason="timeout") from None
        except trio.BrokenResourceError as exc:  # only the TLS handshake raises it here
            raise tls_error(exc, shown) from None
        except OSError as exc:
            raise _connect_error(exc, shown) from None

    async def _bounded(self, call: Awaitable[T]) -> T:
        with trio.fail_after(self.io_timeout_s):
            return await call

    async def _stream(self, conn: RtspConnection, session: Session, sink: PacketSink,
                      phase: int) -> None:
        """Read, depacketize and hand over batches until the connection fails, stalls or ends."""
        infos: tuple[StreamInfo, ...] | None = None
        batch: list[MediaPacket] = []  # kept across reads only until `opened`
        synced = len(session.tracks) < 2  # one track has nothing to line up with
        last_media = started = trio.current_time()
        keepalive_every = max((conn.session.timeout_s if conn.session else 60.0) / 2, 0.5)
        next_keepalive = started + keepalive_every
        paths = reads.shortcuts(session)
        while True:
            tick = trio.current_time()
            # the loop wakes ~2.5 times a second: no task of its own
            if tick >= next_keepalive or session.keepalive_now:
                await conn.send(session.keepalive_method, session.url)
                next_keepalive = tick + keepalive_every
                session.keepalive_now = False
            if session.reports.due(tick):  # RTCP receiver reports, every interval (rtcp.py)
                await self._send_reports(conn, session, tick)
            early: list[Event] = []
            ended = None
            try:
                if not conn.receive_now():  # nearly always read: the timer waited for the bytes
                    with trio.move_on_at(last_media + self.stall_timeout_s):
                        early = await conn.receive()
            except EOFError:
                ended = "connection closed by the server"
            now = trio.current_time()
            if ended is None and now >= last_media + self.stall_timeout_s:
                if infos is not None:  # the frames held back for their duration are complete
                    for track in session.tracks:
                        track.flush(batch)
                    self._hand_over(batch, infos, session, sink, conn.shown_url)
                raise SourceUnavailable(
                    f"no media for {self.stall_timeout_s:g} s from {conn.shown_url}",
                    reason="stall",
                )
            events, media, bye = reads.route(conn.framer, session, paths, early, batch, now)
            redirect = None
            if events:
                self._answered(events, conn, session)
                redirect = await self._answer_requests(events, conn)
            if media:
                last_media = now
            if bye:
                ended = "the server ended the stream (RTCP BYE)"
            if ended or redirect:  # what was complete before the end still counts
                for track in session.tracks:
                    track.flush(batch)
            if not synced and ready_to_sync(session.tracks):
                shifts = sync_origins(session.tracks)
                if shifts:
                    log.info("rtsp.sync url=%s shifts=%s", conn.shown_url, shifts)
                synced = True
            if infos is None:
                if all(t.ready() for t in session.tracks):
                    infos = tuple(t.info() for t in session.tracks)
                    _start_at_last_change(batch, session, conn.shown_url)
                    sink.opened(infos)
                elif not (ended or redirect) and now - started > MAX_PENDING_SECONDS:
                    raise UnsupportedSource(
                        f"no parameter sets (SPS/PPS) in the SDP or stream of {conn.shown_url}",
                        reason="codec",
                    )
            if infos is not None and batch:
                infos = self._hand_over(batch, infos, session, sink, conn.shown_url)
                batch = []
            if redirect is not None:  # `run()` follows it, after our TEARDOWN here
                if infos is not None:
                    redirect.played_s = now - started
                raise redirect
            if ended:
                raise SourceEnded(f"{ended} at {conn.shown_url}")
            if conn.last_read_full:  # a fast camera (> ~5 Mbit/s): keep reading
                await trio.lowlevel.checkpoint()
            elif now - started < START_SECONDS:
                # A new connection's receive window (~128 KiB) is less than 0.4 s of a camera
                # above ~3 Mbit/s until the kernel grows it: read often meanwhile, or a camera
                # with a small send buffer drops the start of the stream (its first key frame).
                await trio.sleep(START_READ_SECONDS)
            else:
                await self._ticker.wait(phase)

    def _hand_over(self, batch: list[MediaPacket], infos: tuple[StreamInfo, ...],
                   session: Session, sink: PacketSink, shown: str) -> tuple[StreamInfo, ...]:
        """`sink.packets(batch)`, describing the session anew where a track's parameters changed
        within it; returns the description now in force."""
        changes = [(position, info) for t in session.tracks if t.reconfigured
                   for position, info in t.reconfigured if info is not None]
        if not changes:  # nearly every read
            if batch:
                sink.packets(batch)
            return infos
        for track in session.tracks:
            track.reconfigured = []
        changes.sort(key=lambda change: change[0])
        start = 0
        for i, (position, info) in enumerate(changes):
            if position > start:
                sink.packets(batch[start:position])
                start = position
            old = infos[info.index]  # an index is the track's position (session.choose_tracks)
            infos = (*infos[: info.index], info, *infos[info.index + 1 :])
            log.info("rtsp.parameters url=%s stream=%d size=%dx%d was=%dx%d", shown, info.index,
                     info.width, info.height, old.width, old.height)
            if i + 1 == len(changes) or changes[i + 1][0] != position:
                sink.opened(infos, reconfigured=True)
        if start < len(batch):
            sink.packets(batch[start:])
        return infos

    async def _send_reports(self, conn: RtspConnection, session: Session, now: float) -> None:
        """One RTCP receiver report per track, each on the track's RTCP channel."""
        tracks = {channel: track.rtp for channel, track in session.rtcp_channels.items()}
        for channel, packet in session.reports.packets(tracks, now):
            await conn.send_interleaved(channel, packet)

    async def _answer_requests(self, events: list[Event], conn: RtspConnection
                               ) -> Redirected | None:
        """Answer each of the server's requests among `events`; return the REDIRECT we follow
        (the last one, should there be several)."""
        followed = None
        for request in events:
            if not isinstance(request, Request):
                continue
            if request.method.upper() != REDIRECT:
                await conn.reply(request, 501, "Not Implemented")
                continue
            headers = request.headers
            status, reason, redirect = answer_redirect(
                headers, conn.session.id if conn.session else None, conn.shown_url)
            log.info("rtsp.redirect_request url=%s cseq=%s location=%s range=%s answer=%d",
                     conn.shown_url, headers.get("cseq", "-"),
                     redact(headers.get("location", "")) or "-", headers.get("range") or "-",
                     status)
            try:
                await conn.reply(request, status, reason)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                if redirect is None:
                    raise
                # a server may close as soon as it has moved us: we follow all the same
            followed = redirect or followed
        return followed

    def _answered(self, events: list[Event], conn: RtspConnection, session: Session) -> None:
        """Take the responses to our keep-alives: a lost session, a stale nonce, a refused
        GET_PARAMETER."""
        for event in events:
            if not isinstance(event, Response):
                continue
            if event.status == 454:
                raise status_error(session.keepalive_method, event, conn.shown_url)
            if (event.status == 401 and session.renewals < MAX_RENEWALS
                    and conn.renew_auth(event)):
                session.renewals += 1  # a stale Digest nonce: the keep-alive goes again now
                session.keepalive_now = True
            elif 200 <= event.status < 300:
                session.renewals = 0
            elif session.keepalive_method != "OPTIONS":
                session.keepalive_method = "OPTIONS"  # GET_PARAMETER refused: fall back


def _start_at_last_change(batch: list[MediaPacket], session: Session, shown: str) -> None:
    """The session is described now, with the parameter sets in force: leave out of `batch` what
    came before they did (only when they changed while we waited to describe it)."""
    start = max((position for t in session.tracks for position, _ in t.reconfigured), default=0)
    for track in session.tracks:
        track.reconfigured = []
    if start:
        log.info("rtsp.parameters url=%s before_open=%d dropped", shown, start)
        del batch[:start]


@dataclass(eq=False, slots=True)
class _Running:
    """One session of this opener, for statistics while it runs."""

    conn: RtspConnection
    session: Session | None = None
    redirected: bool = False  # ended by a redirect we follow: a hop to another URL

    def counts(self) -> Counter[str]:
        conn, session = self.conn, self.session
        # A hop answered before PLAY is not a session of its own; one the server sent while we
        # played (a REDIRECT request) ends a session that was.
        played = session is not None or not self.redirected
        counts = Counter(sessions=int(played), redirects=int(self.redirected),
                         bytes_received=conn.bytes_received,
                         skipped_bytes=conn.framer.skipped_bytes)
        if session is not None:
            counts["rtcp_packets"] += session.rtcp_packets
            counts["rtcp_reports_sent"] += session.reports.sent
            counts["tracks_skipped"] += len(session.skipped)
            for track in session.tracks:
                counts["rtp_packets"] += track.rtp.received
                counts["rtp_lost"] += track.rtp.lost
                counts["rtp_dropped"] += track.rtp.dropped
                counts["units_dropped"] += track.depacketizer.dropped_units
                counts["resync_dropped"] += track.resync_dropped
        return counts


def _connect_error(exc: OSError, shown: str) -> SourceError:
    causes: list[BaseException] = [exc]
    if isinstance(exc.__cause__, BaseExceptionGroup):
        causes += list(exc.__cause__.exceptions)
    if any(isinstance(e, socket.gaierror) for e in causes):
        return SourceUnavailable(f"host not found for {shown}", reason="dns")
    if any(isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED
           for e in causes):
        return SourceUnavailable(f"connection refused by {shown}", reason="refused")
    return SourceUnavailable(f"cannot connect to {shown}: {redact(str(exc))}", reason="os")
