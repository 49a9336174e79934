"""Reading a source with PyAV/FFmpeg: one worker thread per session, packets handed back in batches.

FFmpeg timeouts: we set FFmpeg's own socket timeouts (`timeout` for RTSP, `rw_timeout` elsewhere),
which cost nothing per packet, and not PyAV's `timeout=(open, read)`, whose interrupt callback takes
the GIL on every network poll (measured 1.3-1.7x the CPU). The cost of that choice: a camera whose
server keeps sending RTCP while its encoder is stalled is not broken out of by FFmpeg; RTSP moves to
a native trio client for exactly that reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import socket
import time
from collections.abc import Iterator, Mapping
from fractions import Fraction
from typing import Final
from urllib.parse import urlsplit

import av
import av.error
import trio
from av.audio.codeccontext import AudioCodecContext

from collector.errors import SourceEnded, SourceUnavailable, UnsupportedSource
from collector.media import read_ahead, rereads
from collector.media.aac import audio_specific_config, strip_adts
from collector.media.av_errors import map_av_error
from collector.media.hls_vod import SegmentFailed
from collector.media.opener import FileIdentity, PacketSink, Written
from collector.media.packets import MediaPacket, StreamInfo
from collector.media.parameter_changes import (
    SYNTAX,
    ExtradataWatch,
    ParameterWatch,
    parameter_sets,
)
from collector.media.pyav_streams import StreamAppeared
from collector.media.pyav_streams import install as install_stream_lookup
from collector.urls import PROTOCOL_WHITELIST, is_pull, redact, scheme_of

log = logging.getLogger(__name__)

install_stream_lookup()  # PyAV's demux looks up every packet's stream: see pyav_streams

BATCH_SECONDS = 0.1  # hand packets to trio at most ~10 times a second per camera
BATCH_PACKETS = 64  # ...or sooner when a fast source fills a batch (bounds what a stall strands)
PACED_BATCH_PACKETS = 256  # a file read faster than real time: fewer, larger hand-overs
# FFmpeg's HLS demuxer skips a segment it cannot fetch (after `seg_max_retry`), or that left
# the live window while we read: the timestamps then jump forward by the segment's length, and
# a playlist's media has no pauses of its own. Video frames further apart than this are media
# skipped (a gap, not counted as recorded; the cut plan's default, 5 s, let 2-4 s segments pass
# as recorded), in a playlist whose video has at least HLS_MIN_FPS frames a second (fewer, and
# its frames themselves may be that far apart: the default stays).
HLS_MAX_JUMP_SECONDS = 1.5
HLS_MIN_FPS = 2


def ffmpeg_options(url: str, options: Mapping[str, str], io_timeout_s: float) -> dict[str, str]:
    """The FFmpeg input options for `url`: user options, then our timeouts and whitelist on top."""
    scheme = scheme_of(url)
    opts = dict(options)
    micros = str(int(io_timeout_s * 1_000_000))
    if scheme in ("rtsp", "rtsps"):
        opts.setdefault("rtsp_transport", "tcp")
        opts.setdefault("timeout", micros)
    else:
        opts.setdefault("rw_timeout", micros)
        # A live HLS playlist that stops growing (its encoder died) is reloaded, successfully,
        # for ever (1000 unchanged reloads by default: minutes), so no timeout fires and an
        # abandoned thread kept polling the origin. After 5 unchanged reloads (~2.5 target
        # durations) FFmpeg ends the stream instead. Other formats ignore the option.
        opts.setdefault("m3u8_hold_counters", "5")
        # A segment whose fetch fails is asked for once more before FFmpeg skips it (skipped,
        # its seconds are missing: a gap, see HLS_MAX_JUMP_SECONDS). FFmpeg asks again at
        # once, so this clears a failure that does not last (a reset connection, an error
        # answered once), not an edge that lacks the segment for longer.
        # Each try counts as an unchanged reload toward the 5 above: one leaves room for the
        # reloads spent waiting for a late segment to be listed.
        opts.setdefault("seg_max_retry", "1")
    if scheme in ("http", "https"):
        # A file whose connection breaks part-way is asked for the rest (`Range: bytes=N-`),
        # once, at once; if that fails too the session fails (and the next one skips what was
        # read, rereads.py). FFmpeg does so only where that is safe: the server gave a length
        # and takes byte ranges. (A live stream, without a length, is never resumed this way.)
        # Once only: against a hung server each try waits out rw_timeout again, and an
        # abandoned reading thread would live that much longer.
        opts.setdefault("reconnect", "1")
        opts.setdefault("reconnect_delay_max", "0")
    opts["protocol_whitelist"] = PROTOCOL_WHITELIST[scheme]
    return opts


def describe_streams(
    container: av.container.InputContainer,
) -> tuple[tuple, tuple[StreamInfo, ...]]:
    """Pick the video and audio streams of `container` and make templates that outlive it. An
    audio stream whose codec the template cannot hold is left out, as no segment could hold it."""
    chosen = [s for s in container.streams if s.type in ("video", "audio")]
    if not any(s.type == "video" for s in chosen):
        raise UnsupportedSource("no video stream", reason="no_video")
    holder = av.open(io.BytesIO(), "w", format="matroska")  # never written: holds templates
    infos, kept = [], []
    for s in chosen:
        try:
            template = holder.add_stream_from_template(s, opaque=True)
        except ValueError as exc:  # a codec Matroska cannot hold (G.711, say): none of ours can
            if s.type == "video":
                raise UnsupportedSource(f"video codec {s.codec_context.name!r}: {exc}",
                                        reason="codec") from None
            log.info("pyav.track_skipped stream=%d codec=%s reason=%s", s.index,
                     s.codec_context.name, exc)
            continue
        kept.append(s)
        tb = s.time_base or Fraction(1, 90_000)
        extradata = None
        ctx = s.codec_context
        if isinstance(ctx, AudioCodecContext) and ctx.name == "aac" and not ctx.extradata:
            # ADTS framing: we strip it per packet
            extradata = audio_specific_config(ctx.profile, ctx.sample_rate, ctx.channels)
        infos.append(
            StreamInfo(
                index=s.index,
                kind=s.type,
                codec=s.codec_context.name,
                time_base=Fraction(tb.numerator, tb.denominator),
                width=getattr(s.codec_context, "width", 0) or 0,
                height=getattr(s.codec_context, "height", 0) or 0,
                sample_rate=getattr(s.codec_context, "sample_rate", 0) or 0,
                extradata=extradata,
                template=template,
            )
        )
    return tuple(kept), tuple(infos)


def to_media_packet(packet: av.Packet, time_base: Fraction, adts: bool = False) -> MediaPacket:
    """`packet` as a MediaPacket whose payload is a read-only view of the demuxed packet's own
    buffer: no copy here, and none in the segment writers, which wrap it in an av.Packet each."""
    data = memoryview(packet).toreadonly()
    # Positional: keywords cost 0.3 us more a packet (a tenth of this function).
    return MediaPacket(packet.stream_index, strip_adts(data) if adts else data, packet.pts,
                       packet.dts, packet.duration or 0, packet.is_keyframe, time_base)


# Formats whose packets carry no timestamps of their own: FFmpeg's multipart-JPEG demuxer
# (MJPEG cameras over HTTP) numbers frames at an assumed 25 fps, so a 10 fps camera's minute was
# stored as 24 s of video, and `duration` counted that. Their frames are stamped with the time
# they were read instead, in a fine time base.
WALLCLOCK_FORMATS = frozenset({"mpjpeg"})
WALLCLOCK_TIME_BASE = Fraction(1, 90_000)


class _WallClock:
    def __init__(self, origin: float) -> None:
        self.origin = origin

    def packet(self, packet: av.Packet, time_base: Fraction, adts: bool = False) -> MediaPacket:
        ts = round((time.monotonic() - self.origin) * WALLCLOCK_TIME_BASE.denominator)
        return to_media_packet(packet, time_base, adts)._replace(pts=ts, dts=ts, duration=0)


class PyAVOpener:
    """Opens HTTP(S) (MPEG-TS, MJPEG, FLV), HLS, RTMP and RTSP sources through FFmpeg."""

    def __init__(self, limiter: trio.CapacityLimiter, *, io_timeout_s: float = 10.0) -> None:
        self.limiter = limiter
        self.io_timeout_s = io_timeout_s

    async def run(self, url: str, options: Mapping[str, str], sink: PacketSink) -> None:
        opts = ffmpeg_options(url, options, self.io_timeout_s)
        # abandon_on_cancel: only FFmpeg can unblock a read, so a stalled session is abandoned at
        # once; its thread ends at FFmpeg's next packet or timeout and touches nothing of ours.
        await trio.to_thread.run_sync(
            self._session, url, opts, sink, trio.lowlevel.current_trio_token(),
            limiter=self.limiter, abandon_on_cancel=True,
        )

    def _session(self, url: str, opts: dict[str, str], sink: PacketSink,
                 trio_token: trio.lowlevel.TrioToken) -> None:
        """Runs in a worker thread: demux until the source ends, fails, or trio cancels us."""
        reading, file = self._open_session(url, opts, sink, trio_token)
        container, whole = reading.container, reading.whole
        with contextlib.closing(reading):
            chosen, infos = describe_streams(container)
            convert = to_media_packet
            if container.format.name in WALLCLOCK_FORMATS and not is_finite(container, url):
                # (a file of such frames is read faster than real time: numbered as FFmpeg does)
                infos = tuple(dataclasses.replace(i, time_base=WALLCLOCK_TIME_BASE) for i in infos)
                convert = _WallClock(time.monotonic()).packet
            bases = {info.index: info.time_base for info in infos}
            adts = {info.index: info.extradata is not None for info in infos}
            paced = is_pull(url)
            watch = _parameter_watch(container, chosen, infos)
            side = _extradata_watch(container, chosen, infos)

            paced_hand_over = _PacedHandOver(sink, trio_token)
            # a file read again after its connection broke, a live playlist after an outage:
            # skip what the jobs have of it (rereads.py)
            video = next(i.index for i in infos if i.kind == "video")
            before = sink.read_before(file) if file is not None else None
            skip = (rereads.Skips(before, file, video, bases)
                    if before is not None and file is not None else None)
            live = file == rereads.LIVE_PLAYLIST

            # the source's first video packet is kept once, from its first session
            first_wanted = file is not None and before is None
            skipped_header: StreamInfo | None = None  # FLV: a new header the skip passed

            def hand_over(batch: list[MediaPacket], now: float) -> None:
                nonlocal first_wanted
                if paced:
                    paced_hand_over(batch, now)
                else:
                    trio.from_thread.run_sync(sink.packets, batch)
                if file is not None:
                    held = rereads.handed_over(batch, len(infos), video, live, first_wanted)
                    first_wanted = first_wanted and not held.first
                    sink.handed_over(file, held)

            trio.from_thread.run_sync(sink.opened, infos, False, _max_jump(container, video))
            most = PACED_BATCH_PACKETS if paced else BATCH_PACKETS
            batch: list[MediaPacket] = []
            media: MediaPacket | None = None
            flushed_at = beat_at = time.monotonic()
            try:
                for packet in _demuxed(container, chosen, url):
                    if packet.size == 0:  # flush packet at end of stream
                        continue
                    index = packet.stream_index
                    info = None  # the stream described anew from this packet on
                    if skip is not None:
                        if skip.skips(packet, index):
                            if side is not None:
                                # a new FLV header among what is skipped: FLV does not send it
                                # again, and what follows the skip is under it
                                skipped_header = _new_header(side, packet) or skipped_header
                            if (now := time.monotonic()) - beat_at >= BATCH_SECONDS:
                                trio.from_thread.check_cancelled()
                                trio_token.run_sync_soon(sink.reading)  # not a stall
                                beat_at = now
                            continue
                        info, skipped_header = skipped_header, None
                        if not skip:  # past all of it: no more checks
                            skip = None
                    media = convert(packet, bases[index], adts[index])
                    if watch is not None and media.keyframe and index == watch.info.index:
                        info = watch.changed(media.data) or info
                    elif side is not None:
                        info = _new_header(side, packet) or info
                    if info is not None:
                        # described anew right before this packet: what came before first
                        if batch:
                            hand_over(batch, time.monotonic())
                            batch, flushed_at = [], time.monotonic()
                        paced_hand_over.report()
                        infos = tuple(info if i.index == info.index else i for i in infos)
                        if paced:  # a job catching up is waited for, not dropped
                            trio.from_thread.run(sink.opened_paced, infos)
                        else:
                            trio.from_thread.run_sync(sink.opened, infos, True)
                    batch.append(media)
                    now = time.monotonic()
                    if now - flushed_at >= BATCH_SECONDS or len(batch) >= most:
                        trio.from_thread.check_cancelled()
                        hand_over(batch, now)
                        batch, flushed_at = [], now
                finished = whole(media)
            except (av.error.FFmpegError, OSError) as exc:
                # (a playlist read ahead, hls_vod, may have failed at a segment's start)
                torn = not isinstance(exc, SegmentFailed) or exc.torn
                if torn and container.format.name in rereads.TORN_TAIL_FORMATS:
                    batch = rereads.without_torn_tails(batch)
                if batch:
                    hand_over(batch, time.monotonic())
                paced_hand_over.report()
                if isinstance(exc, SegmentFailed):
                    raise exc.error from None
                raise map_av_error(exc, url) from None
            if batch:
                hand_over(batch, time.monotonic())
            paced_hand_over.report()
            if finished:
                raise SourceEnded(f"the file ended at {redact(url)}", finished=True)
        raise SourceEnded(f"stream ended at {redact(url)}")

    def _open_session(
        self, url: str, opts: dict[str, str], sink: PacketSink,
        trio_token: trio.lowlevel.TrioToken,
    ) -> tuple[read_ahead.Reading, FileIdentity | None]:
        """The source opened, and opened again to be read ahead if it is a file worth it
        (read_ahead.py); and what file it is (rereads.py), as this first, direct, open saw it."""
        started = time.monotonic()
        container = self._open(url, opts)
        try:
            file = rereads.identity(container, is_finite(container, url))
            ahead = None
            if (time.monotonic() - started < read_ahead.READ_AHEAD_OPEN_S
                    and read_ahead.worth_it(container, url)):
                trio_token.run_sync_soon(sink.reading)  # it answered: the second open is no stall
                ahead = read_ahead.reopen(container, url, opts, self.io_timeout_s)
        except BaseException:
            container.close()
            raise
        if ahead is not None:
            return ahead, file
        # read directly, a file cut short turns into a stream: its size unknown
        return read_ahead.Reading(container, lambda last: is_finite(container, url)), file

    def _open(self, url: str, opts: dict[str, str]) -> av.container.InputContainer:
        started = time.monotonic()
        try:
            return av.open(url, options=opts)
        except (av.error.FFmpegError, OSError) as exc:
            if time.monotonic() - started >= self.io_timeout_s * 0.9:
                # FFmpeg's RTSP demuxer reports a timed-out answer as "invalid data"
                raise SourceUnavailable(
                    f"timed out: no answer within {self.io_timeout_s:g} s from {redact(url)}",
                    reason="timeout",
                ) from None
            if isinstance(exc, av.error.FFmpegError) and _unresolvable(url):
                # FFmpeg's tcp protocol reports a failed lookup as an I/O error
                raise SourceUnavailable(f"host not found for {redact(url)}",
                                        reason="dns") from None
            raise map_av_error(exc, url) from None


def _max_jump(container: av.container.InputContainer, video: int) -> float | None:
    """SessionInfo.max_jump for the session: HLS_MAX_JUMP_SECONDS for a playlist FFmpeg's HLS
    demuxer reads, whose video has a known rate of HLS_MIN_FPS or more; else the default."""
    if container.format.name != "hls":
        return None
    rate = container.streams[video].average_rate
    return HLS_MAX_JUMP_SECONDS if rate is not None and rate >= HLS_MIN_FPS else None


def _demuxed(container: av.container.InputContainer, chosen: tuple,
             url: str) -> Iterator[av.Packet]:
    """`container.demux(chosen)`, which ends where the input does even when a stream appeared
    after the open: PyAV skips its packets, then its flush at the end looks it up and raises
    (pyav_streams.StreamAppeared). Only the demuxing is covered: the same error from anything
    the session does with a packet stays a failure."""
    try:
        yield from container.demux(chosen)
    except StreamAppeared as exc:
        log.warning("source.stream_appeared url=%s error=%s: a stream that appeared after the "
                    "open was left out", redact(url), exc)


class _PacedHandOver:
    """Hands over the batches of a source that can wait, in the reading thread: the jobs that lent
    their recorder mux each batch here (`write_here`). When every job did, nobody waits for the
    packets: the trio thread is told (`packets_written`, without this thread waiting for it) once
    BATCH_SECONDS have passed since it last was, since each report wakes the trio thread, whose
    work then competes with this thread for the GIL. Otherwise this thread waits until every
    other job has room for the batch (`packets_paced`: backpressure), after reporting what piled
    up, so that every job hears of its batches in order."""

    def __init__(self, sink: PacketSink, trio_token: trio.lowlevel.TrioToken) -> None:
        self.sink, self.trio_token = sink, trio_token
        self.unreported: Written | None = None
        self.reported_at = time.monotonic()

    def __call__(self, batch: list[MediaPacket], now: float) -> None:
        written = self.sink.write_here(batch)
        if not written.everyone:
            self.report()
            trio.from_thread.run(self.sink.packets_paced, batch, written)
            return
        self.unreported = written if self.unreported is None else self.unreported.plus(written)
        if now - self.reported_at >= BATCH_SECONDS:
            self.report()
            self.reported_at = now

    def report(self) -> None:
        if self.unreported is not None:
            self.trio_token.run_sync_soon(self.sink.packets_written, self.unreported)
            self.unreported = None


def _parameter_watch(container: av.container.InputContainer, chosen: tuple,
                     infos: tuple[StreamInfo, ...]) -> ParameterWatch | None:
    """A watch for new parameter sets on the H.264 or H.265 video of an MPEG-TS or HLS source,
    whose key frames carry them in-band (parameter_changes.py); None for any other source."""
    if container.format.name not in ("mpegts", "hls"):
        return None
    for stream, info in zip(chosen, infos, strict=True):
        if info.kind == "video" and info.codec in SYNTAX:
            if not (extradata := stream.codec_context.extradata):
                return ParameterWatch(info, None)
            described = parameter_sets(extradata, info.codec)
            return ParameterWatch(info, described.sps, described.vps)
    return None


NEW_EXTRADATA: Final = "new_extradata"  # FFmpeg's AV_PKT_DATA_NEW_EXTRADATA, as PyAV names it


def _new_header(side: ExtradataWatch, packet: av.Packet) -> StreamInfo | None:
    """The stream described anew by a new FLV sequence header on `packet`, if it brings one
    (FFmpeg hands it on as the next video packet's side data)."""
    if packet.stream_index != side.info.index or not packet.has_sidedata(NEW_EXTRADATA):
        return None
    return side.changed(bytes(packet.get_sidedata(NEW_EXTRADATA)))


def _extradata_watch(container: av.container.InputContainer, chosen: tuple,
                     infos: tuple[StreamInfo, ...]) -> ExtradataWatch | None:
    """A watch for new AVC sequence headers on the H.264 video of an FLV source (over HTTP, or
    RTMP), which come out of band (parameter_changes.py); None for any other source."""
    if container.format.name not in ("flv", "live_flv"):
        return None
    for stream, info in zip(chosen, infos, strict=True):
        if info.kind == "video" and info.codec == "h264":
            return ExtradataWatch(info, bytes(stream.codec_context.extradata or b"") or None)
    return None


def _unresolvable(url: str) -> bool:
    """Does the URL's host name fail to resolve? Asked only after an open failed (blocking:
    the worker thread's)."""
    host = urlsplit(url).hostname
    if not host:
        return False
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError):
        return True
    return False


def is_finite(container: av.container.InputContainer, url: str) -> bool:
    """Is this source a file rather than a live stream? An HLS playlist is when it is a VOD one
    (`#EXT-X-ENDLIST`: FFmpeg then knows its duration); anything else over HTTP when the server
    gave its size (a live stream has no Content-Length: avio_size answers an error)."""
    if container.format.name == "hls":
        return container.duration is not None
    return is_pull(url) and container.size > 0

