"""Files over HTTP(S) read ahead: their bytes fetched on the second core while the session's
thread demuxes and muxes, which take the GIL around every packet.

A session opens its source directly first (pyav_source), which tells what it is. A file worth
it is then opened a second time (`reopen`):
- a file of at least READ_AHEAD_MIN_BYTES through FFmpeg's `async` protocol, which reads it
  into an 8 MiB buffer in a thread of its own, without the GIL (measured: a long file's pace
  ~15 % faster, for ~15 % more CPU);
- a VOD HLS playlist of plain MPEG-TS segments through hls_vod, whose own thread fetches the
  segments (FFmpeg's HLS demuxer opens its segments itself, over http only, so `async` cannot
  reach them; measured: a long playlist's pace from 0.61-0.73 of ffmpeg's to a median of 0.82,
  for ~25 % more CPU).
The second open and probe cost ~14 ms for a file, ~15 ms for a playlist (its text fetched
again, then its first segment). A live stream (no size, no end) is never read ahead:
a camera would pay the thread and the buffer for nothing; nor is an MJPEG stream over HTTP, a
live camera format whose servers may announce a made-up Content-Length. The file's identity and
its end stay as the first, direct, open saw them: a read-ahead's own open may see less.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import av
import av.error

from collector.errors import SourceError
from collector.media import hls_vod
from collector.media.packets import MediaPacket
from collector.urls import is_pull, redact

log = logging.getLogger(__name__)

# A file over HTTP(S) at least this large is read ahead: the second open costs what the
# read-ahead saves on ~64 MiB at this machine's pace.
READ_AHEAD_MIN_BYTES = 64 << 20
# Only a source whose first open took less than this is opened again (one slower than that is
# not read at a pace the read-ahead helps), and the second open may take twice as long.
READ_AHEAD_OPEN_S = 1.0
# A file read ahead ended where it should if its last packet is at most this far from its end.
READ_AHEAD_END_SLACK_S = 2.0
# An MJPEG stream over HTTP is a live camera, some of which announce a made-up Content-Length.
NOT_READ_AHEAD = frozenset({"mpjpeg"})
# A playlist's segment is fetched in up to this many steps that FFmpeg's rw_timeout bounds one
# by one (connect, TLS, the answer, each read): hls_vod gives up after as many without progress.
SEGMENT_STEPS = 4
# Options of the user's that the demuxer reading a playlist's segments takes (FFmpeg's HLS
# demuxer would pass them on to its own).
PROBE_OPTIONS = frozenset({"probesize", "analyzeduration"})


@dataclass(frozen=True)
class Reading:
    """How a session reads its source: the container it demuxes; `whole(last packet)`, which
    tells, once the demuxing ended cleanly, whether all of the file was read (rather than a
    connection cut short), or raises the hls_vod.SegmentFailed that ended it; and the playlist's
    fetching thread, if any, which `close` stops with the container (PyAV never closes a
    file-like input)."""

    container: av.container.InputContainer
    whole: Callable[[MediaPacket | None], bool]
    segments: hls_vod.SegmentStream | None = None

    def close(self) -> None:
        try:
            self.container.close()
        finally:
            if self.segments is not None:
                self.segments.close()


def worth_it(container: av.container.InputContainer, url: str) -> bool:
    """Is the source, as its direct open shows it, a file to read ahead?"""
    if not is_pull(url):
        return False
    if container.format.name == "hls":
        return container.duration is not None  # a VOD playlist (#EXT-X-ENDLIST)
    return container.format.name not in NOT_READ_AHEAD and container.size >= READ_AHEAD_MIN_BYTES


def reopen(container: av.container.InputContainer, url: str, opts: Mapping[str, str],
           io_timeout_s: float) -> Reading | None:
    """The source opened again, read ahead, with `container` closed; or None, `container` kept
    at its start, if this source is not read ahead after all (a playlist hls_vod does not take),
    or the second open failed or took more than 2 x READ_AHEAD_OPEN_S (a server that takes one
    connection only, or holds the second)."""
    if container.format.name == "hls":
        ahead = _playlist(url, opts, io_timeout_s)
    else:
        ahead = _async(container, url, opts)
    if ahead is not None:
        container.close()
    return ahead


def _async(container: av.container.InputContainer, url: str,
           opts: Mapping[str, str]) -> Reading | None:
    """The file through FFmpeg's `async` protocol."""
    ahead_opts = {**opts, "protocol_whitelist": f"async,{opts['protocol_whitelist']}"}
    fmt = container.format.name.split(",")[0]  # known: no second probe of the format
    try:
        # PyAV's open timeout polls with the GIL, but only while opening (not reading: None)
        ahead = av.open(f"async:{url}", options=ahead_opts, format=fmt,
                        timeout=(2 * READ_AHEAD_OPEN_S, None))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        log.warning("source.read_ahead_failed url=%s error=%s", redact(url), redact(str(exc)))
        return None
    log.info("source.read_ahead url=%s bytes=%d", redact(url), ahead.size)
    end = _end_seconds(container)
    # `async` keeps the size it saw at the open, so a connection cut short whose resumption
    # the server refused ends as cleanly as the whole file (read directly, the size turns
    # unknown). The last packet's time then falls short of the end.
    return Reading(ahead, lambda last: _read_to_its_end(end, last))


def _playlist(url: str, opts: Mapping[str, str], io_timeout_s: float) -> Reading | None:
    """A VOD playlist's segments fetched ahead (hls_vod), if it is one hls_vod takes."""
    stream = None
    try:
        text = hls_vod.fetch_playlist(url, opts, 2 * READ_AHEAD_OPEN_S)
        playlist = hls_vod.parse(text, url)
        if playlist is None:
            log.info("source.read_ahead_refused url=%s", redact(url))
            return None
        stream = hls_vod.SegmentStream(playlist, opts, 2 * READ_AHEAD_OPEN_S)
        probing = {k: v for k, v in opts.items() if k in PROBE_OPTIONS}  # the user's, if any
        ahead = av.open(stream, "r", format="mpegts", options=probing,
                        buffer_size=hls_vod.CHUNK_BYTES)
    except (av.error.FFmpegError, OSError, ValueError, SourceError) as exc:
        if stream is not None:
            stream.close()
            # (a first segment that failed ends the input: the open fails "End of file")
            exc = stream.failure or exc
        log.warning("source.read_ahead_failed url=%s error=%s", redact(url), redact(str(exc)))
        return None
    stream.patience_s = SEGMENT_STEPS * io_timeout_s
    log.info("source.read_ahead url=%s segments=%d", redact(url), len(playlist.segments))
    return Reading(ahead, lambda last: stream.ended(), stream)


def _end_seconds(container: av.container.InputContainer) -> float | None:
    """Where the file ends, as FFmpeg estimated at the open (seconds, the streams' clock)."""
    if container.duration is None:
        return None
    return ((container.start_time or 0) + container.duration) / 1_000_000


def _read_to_its_end(end: float | None, last: MediaPacket | None) -> bool:
    """Did a file read ahead end where the file does (`end`, from its direct open)? (The
    read-ahead's own open may have met the cut already, and estimated the end there.)"""
    if end is None or last is None:
        return True  # nothing to tell by
    ts = last.pts if last.pts is not None else last.dts
    return ts is None or float(ts * last.time_base) >= end - READ_AHEAD_END_SLACK_S
