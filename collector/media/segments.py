"""Writing one segment file with PyAV: packet copy, no transcoding, readable after a crash.

Crash safety per format: fragmented MP4 (`frag_keyframe+empty_moov+default_base_moof`, plus a
fragment at least every half second), Matroska (clusters of at most half a second, readable
without cues) and MPEG-TS are all readable up to the last written fragment, cluster or packet
(half-second fragments also halve what a muxer holds in memory: ~240 KiB less per camera);
`flush_packets` hands every packet to the kernel at once. A closed file is fsync'ed
(`make_durable`, in a worker thread) before its step is announced.

Memory per open segment (there is one per camera and job): the file is opened here and given to
FFmpeg with a 32 KiB I/O buffer (opened by path, FFmpeg's file protocol allocates 256 KiB; a
file recorded faster than real time gets 256 KiB too), and
stream templates are never encoders (rtsp/templates.py).

A stream the format cannot hold is left out and the rest recorded (the video at least, or the
segment fails): what FFmpeg's muxer refuses, and raw PCM in MPEG-TS, which FFmpeg would write as
an unreadable `bin_data` stream. So PCM audio (the native client's G.711, expanded to 16-bit)
is kept in Matroska and MP4 ('ipcm') and left out of .ts files.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import av
import av.error

from collector.errors import SegmentError
from collector.media.packets import MediaPacket, StreamInfo
from collector.media.writeback import WRITEBACK, Pending

# format name -> (FFmpeg muxer, file extension, muxer options)
FORMATS: dict[str, tuple[str, str, dict[str, str]]] = {
    "mp4": (
        "mp4",
        ".mp4",
        {"movflags": "frag_keyframe+empty_moov+default_base_moof", "frag_duration": "500000"},
    ),
    "mkv": ("matroska", ".mkv", {"cluster_time_limit": "500"}),
    "ts": ("mpegts", ".ts", {}),
}
CONTAINER_OPTIONS = {"flush_packets": "1"}
IO_BUFFER_BYTES = 32 * 1024
# A file read as fast as its jobs record it has its segments written in a fraction of their
# duration: 8x fewer, larger writes there, each one a call from FFmpeg into Python
# (`SegmentFile.write`), for 224 KiB more per open segment (measured: 0.7 us less per packet, a
# tenth of offline ingest's time per packet). The recorder chooses (recorder.py).
FAST_IO_BUFFER_BYTES = 256 * 1024
# Codec name prefixes a format's muxer takes but cannot store readably.
LEFT_OUT: dict[str, tuple[str, ...]] = {"ts": ("pcm_",)}


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentResult:
    index: int
    path: Path
    started_at: float  # wall-clock time the segment was opened (Unix seconds)
    ended_at: float  # wall-clock time the file was closed (the packet that ended it had arrived)
    start_seconds: float  # position of its first frame within the job's source recording
    duration: float
    frames: int  # video frames written
    keyframes: int
    bytes: int
    reason: str  # why it ended: "boundary", "end", "discontinuity", "stopped"
    format: str  # mp4 | mkv | ts
    codec: str  # the codecs of the streams in the file, e.g. "h264+aac"


_Packet = av.Packet


class _Rational(NamedTuple):
    """A time base as PyAV reads it (`numerator`, `denominator`), without Fraction's properties."""

    numerator: int
    denominator: int


class SegmentFile(io.FileIO):
    """An unbuffered segment file whose `write` writes everything or raises, and whose data the
    kernel starts writing to disk each `WRITEBACK_BYTES` (at most each `WRITEBACK_SECONDS`).

    PyAV hands FFmpeg what a Python file's `write` returns, and FFmpeg ignores a short count: on a
    full disk the first, partial, write would leave a hole and pass silently (and a partial last
    write would make a truncated file look complete). Looping makes the next write raise ENOSPC,
    which PyAV re-raises from `mux` or `close`. Unbuffered, so `flush_packets` still means the
    kernel has every packet.

    Writeback: a closed segment is fsync'ed before its step is announced (`make_durable`). Left
    to the kernel, a 10 s segment's 2.6 MB are all still dirty then (writeback starts after
    30 s), and when 100 cameras cut at once their fsyncs wait for 260 MB: 262 ms p50, 544 ms p99
    from the cut to the announcement, measured. `POSIX_FADV_DONTNEED` on what was written
    starts its writeback without waiting for it (and drops the pages once clean: nobody reads a
    segment back soon), so the fsync finds at most the last MiB dirty (the last second's bytes,
    above 8 Mbit/s: see below). The advice can block on
    the filesystem's journal, so it is given in a thread of its own (`writeback`), never in the
    writer's, which is often the event loop's.

    At most one kick each `WRITEBACK_SECONDS`: a camera writes a MiB in seconds (4 s at 2 Mbit/s)
    and is kicked as before, but a file ingested at hundreds of times real time writes a whole
    segment in a fraction of a second, and kicks in between only had the writer compete with the
    writeback it started (measured: 0.45 us a packet, 6 % of offline ingest's time). Its fsync
    at close writes the segment back either way.
    """

    WRITEBACK_BYTES = 1 << 20
    WRITEBACK_SECONDS = 1.0
    clock = staticmethod(time.monotonic)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._written = self._kicked = 0  # bytes written; when writeback was last asked for
        self._kicked_at = self.clock()  # ...and the time it was (or the file opened)
        self._pending = Pending()

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        while view:
            view = view[super().write(view) or 0 :]
        self._written += size
        if self._written - self._kicked >= self.WRITEBACK_BYTES:
            now = self.clock()
            if now - self._kicked_at >= self.WRITEBACK_SECONDS:
                WRITEBACK.kick(self.fileno(), self._pending)
                self._kicked, self._kicked_at = self._written, now
        return size


class SegmentWriter:
    """One open segment file. Not thread-safe: one worker thread uses it at a time."""

    def __init__(
        self,
        path: Path,
        fmt: str,
        streams: tuple[StreamInfo, ...],
        *,
        index: int,
        start_seconds: float,
        io_buffer_bytes: int = IO_BUFFER_BYTES,
    ) -> None:
        muxer, _, muxer_options = FORMATS[fmt]
        self.format = fmt
        self.path, self.index, self.start_seconds = path, index, start_seconds
        self.started_at = time.time()
        try:
            self._file = SegmentFile(path, "wb")  # closed in close()
        except OSError as exc:
            raise SegmentError(f"cannot create segment {path.name}: {exc}") from None
        self._streams: dict[int, av.stream.Stream] = {}
        # Each stream's time base as its packets carry it, and the same as plain numbers for PyAV
        self._time_bases: dict[int, tuple[Fraction, _Rational]] = {}
        self._codecs: list[str] = []
        self._last_dts: dict[int, int] = {}
        self._video: int | None = None
        try:
            self._open_streams(muxer, muxer_options, streams, io_buffer_bytes)
        except BaseException:  # nothing of a segment that never was: no file, no open container
            if (out := getattr(self, "_out", None)) is not None:
                try:
                    out.close()
                except (av.error.FFmpegError, OSError):
                    pass
            self._file.close()
            path.unlink(missing_ok=True)
            raise
        self.frames = self.keyframes = 0
        # The video's first and end timestamps, in ticks of its time base (no Fraction per packet).
        self._first_video: int | None = None
        self._end_video = 0
        self._video_time_base: Fraction | None = None

    def _open_streams(self, muxer: str, muxer_options: dict[str, str],
                      streams: tuple[StreamInfo, ...], io_buffer_bytes: int) -> None:
        try:
            self._out = av.open(
                self._file, "w", format=muxer, options=muxer_options,
                container_options=CONTAINER_OPTIONS, buffer_size=io_buffer_bytes,
            )
        except (av.error.FFmpegError, OSError) as exc:
            raise SegmentError(f"cannot create segment {self.path.name}: {exc}") from None
        left_out = LEFT_OUT.get(self.format, ())
        for info in streams:
            if info.codec.startswith(left_out):
                continue
            try:
                out = self._out.add_stream_from_template(info.template, opaque=True)
            except ValueError:  # the container cannot hold this codec: leave the stream out
                continue
            out.time_base = info.time_base
            tb = info.time_base
            self._time_bases[info.index] = (tb, _Rational(tb.numerator, tb.denominator))
            self._codecs.append(info.codec)
            if info.extradata is not None:
                out.codec_context.extradata = info.extradata
            self._streams[info.index] = out
            if info.kind == "video" and self._video is None:
                self._video = info.index
        if self._video is None:
            raise SegmentError(f"the {self.format} format cannot hold this source's video")
        self._mux = self._out.mux_one

    def write(self, pkt: MediaPacket, pts: int, dts: int | None) -> None:
        """Mux `pkt` with the given (already job-relative) timestamps, repaired to be monotonic.

        Called for every packet: keep the Python work here to what muxing needs.
        """
        index = pkt.stream
        stream = self._streams.get(index)
        if stream is None:
            return
        if dts is None:
            dts = pts
        last = self._last_dts.get(index)
        if last is not None and dts <= last:
            dts = last + 1
        if pts < dts:
            pts = dts
        self._last_dts[index] = dts
        # References the payload (bytes, or a view of the demuxed packet) without copying it;
        # PyAV takes any buffer, though its stub says bytes.
        packet = _Packet(pkt.data)  # type: ignore[arg-type]
        packet.stream = stream
        # PyAV reads a time base's numerator and denominator, which a Fraction computes in
        # Python: the stream's own, as plain numbers, when the packet's is that very object.
        carried, plain = self._time_bases[index]
        packet.time_base = plain if pkt.time_base is carried else pkt.time_base  # type: ignore[assignment]
        packet.pts = pts
        packet.dts = dts
        packet.duration = pkt.duration
        packet.is_keyframe = pkt.keyframe
        try:
            self._mux(packet)
        except (av.error.FFmpegError, OSError) as exc:
            raise SegmentError(f"cannot write segment {self.path.name}: {exc}") from None
        if index == self._video:
            if self._first_video is None:
                self._first_video, self._video_time_base = pts, pkt.time_base
            end = pts + pkt.duration
            if end > self._end_video:
                self._end_video = end
            self.frames += 1
            if pkt.keyframe:
                self.keyframes += 1

    @property
    def video_seconds(self) -> float:
        if self._first_video is None or self._video_time_base is None:
            return 0.0
        return float((self._end_video - self._first_video) * self._video_time_base)

    def close(self, reason: str) -> SegmentResult:
        """Finish the file (its last fragment goes to the kernel); `make_durable` then fsyncs it.

        The two are apart so that the muxing, which is cheap, runs where the packets are, and only
        the fsync, which can wait on the disk, goes to a worker thread.
        """
        try:
            try:
                self._out.close()
                size = os.fstat(self._file.fileno()).st_size  # no path lookup, unlike stat()
            finally:
                self._file.close()
        except (av.error.FFmpegError, OSError) as exc:
            raise SegmentError(f"cannot finish segment {self.path.name}: {exc}") from None
        return SegmentResult(
            index=self.index,
            path=self.path,
            started_at=self.started_at,
            ended_at=time.time(),
            start_seconds=self.start_seconds,
            duration=round(self.video_seconds, 6),
            frames=self.frames,
            keyframes=self.keyframes,
            bytes=size,
            reason=reason,
            format=self.format,
            codec="+".join(self._codecs),
        )


def make_durable(paths: Sequence[Path]) -> None:
    """fsync each finished segment file (blocking: call it from a worker thread)."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise SegmentError(f"cannot make segment {path.name} durable: {exc}") from None
