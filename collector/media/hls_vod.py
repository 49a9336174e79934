"""A VOD HLS playlist of MPEG-TS segments read as the one MPEG-TS stream its segments make, the
segments fetched ahead in a thread of their own (read_ahead.py says when).

FFmpeg's HLS demuxer reads a playlist's segments one after the other into one MPEG-TS demuxer,
in the thread that demuxes: each segment's request and every socket read wait in the thread that
also muxes, and which takes the GIL around every packet. Here `SegmentStream` fetches the segments
in order through FFmpeg's raw `data` demuxer (FFmpeg's own http: the session's options,
timeouts, protocol whitelist, TLS and credentials) in its own thread, up to AHEAD_BYTES ahead, and
hands the bytes to an MPEG-TS demuxer through PyAV's file-like input, in CHUNK_BYTES pieces. That
demuxer sees what FFmpeg's HLS demuxer shows its inner one: the segments' bytes one after the
other.

What differs from FFmpeg's HLS demuxer: a segment that cannot be fetched whole fails the session
(FFmpeg's skips it and goes on, leaving a hole in the recording) and the job's next session reads
the playlist again, skipping what was recorded (rereads.py); each segment gets a connection of
its own (FFmpeg's keeps one alive). A playlist this module does not take (a master playlist, a
live one, encrypted, fMP4 or byte-range segments, a segment URL not over http(s)) is left to
FFmpeg's HLS demuxer, as are relative segment URLs of a playlist that redirected elsewhere when
they cannot be fetched from the playlist's own URL (the first segment failing fails the open).
"""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urljoin

import av
import av.error

from collector.errors import SourceEnded, SourceError, SourceUnavailable
from collector.media.av_errors import map_av_error
from collector.urls import redact, scheme_of

log = logging.getLogger(__name__)

CHUNK_BYTES = 256 << 10  # what the fetching thread hands over at most at once
AHEAD_BYTES = 8 << 20  # fetched and not yet demuxed, at most (FFmpeg's `async` keeps as much)
PLAYLIST_MAX_BYTES = 4 << 20

# Tags after which the playlist is left to FFmpeg: a master playlist's variants, encrypted
# segments (unless METHOD=NONE), fMP4 segments' init section, byte ranges, gaps.
_REFUSED_TAGS = frozenset({
    "#EXT-X-STREAM-INF", "#EXT-X-I-FRAME-STREAM-INF", "#EXT-X-MEDIA", "#EXT-X-MAP",
    "#EXT-X-BYTERANGE", "#EXT-X-GAP", "#EXT-X-PART", "#EXT-X-I-FRAMES-ONLY",
})


@dataclass(frozen=True)
class VodPlaylist:
    url: str
    segments: tuple[str, ...]  # absolute URLs, in order


def parse(text: str, url: str) -> VodPlaylist | None:
    """The segments of a VOD media playlist (`#EXT-X-ENDLIST`) whose segments this module reads,
    resolved against `url`; None for any other playlist."""
    lines = [line.strip() for line in text.splitlines()]
    if not lines or not lines[0].startswith("#EXTM3U"):
        return None
    segments: list[str] = []
    ended = False
    for line in lines[1:]:
        if not line:
            continue
        if line.startswith("#"):
            tag, _, value = line.partition(":")
            if tag in _REFUSED_TAGS:
                return None
            if tag == "#EXT-X-KEY" and _attribute(value, "METHOD") != "NONE":
                return None
            ended = ended or tag == "#EXT-X-ENDLIST"
            continue
        segment = urljoin(url, line)
        if scheme_of(segment) not in ("http", "https"):
            return None
        segments.append(segment)
    if not ended or not segments:
        return None
    return VodPlaylist(url, tuple(segments))


def _attribute(attributes: str, name: str) -> str | None:
    """One attribute of a tag's attribute list (`METHOD=AES-128,URI="..."`), unquoted."""
    for match in _ATTRIBUTE.finditer(attributes):
        if match["name"] == name:
            return match["value"].strip('"')
    return None


_ATTRIBUTE = re.compile(r'(?P<name>[A-Z0-9-]+)=(?P<value>"[^"]*"|[^,]*)')


def fetch_playlist(url: str, options: Mapping[str, str], timeout_s: float) -> str:
    """The playlist's text, read through FFmpeg's http (raw `data` demuxer)."""
    with av.open(url, format="data", options={**options, "raw_packet_size": str(CHUNK_BYTES)},
                 timeout=(timeout_s, timeout_s)) as container:
        data = bytearray()
        for packet in container.demux():
            data += memoryview(packet)
            if len(data) > PLAYLIST_MAX_BYTES:
                raise ValueError("playlist larger than 4 MiB")
    return data.decode("utf-8", errors="replace")


class SegmentFailed(OSError):
    """A segment could not be fetched whole: `error` says why, as the session reports it;
    `torn`: some of its bytes were read, so the last packets demuxed may be cut short."""

    def __init__(self, error: SourceError, torn: bool) -> None:
        super().__init__(str(error))
        self.error, self.torn = error, torn


class SegmentStream:
    """The playlist's segments as one byte stream, fetched ahead by a thread of its own: a
    file-like object for PyAV (`read`), then `ended()`. `close` stops the fetching at its next
    chunk; the session calls it with the container's (read_ahead.Reading): PyAV never does.

    A segment that fails ends the stream where it failed, as the end of the input: the MPEG-TS
    demuxer then hands out every packet it holds (at an error it would keep the last few), and
    `ended()` raises the failure."""

    def __init__(self, playlist: VodPlaylist, options: Mapping[str, str],
                 patience_s: float) -> None:
        self.playlist = playlist
        self.options = {**options, "raw_packet_size": str(CHUNK_BYTES)}
        # longest the fetching thread may go without progress (a segment answered, a chunk)
        # before a read gives up: a backstop, as FFmpeg's rw_timeout bounds each of its steps
        self.patience_s = patience_s
        self._progress_at = time.monotonic()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._held = 0  # bytes in _chunks
        self._done = False  # the fetching thread put its last chunk
        self._whole = False  # ...and every segment came whole
        self._failure: SegmentFailed | None = None
        self._started = False  # the segment being fetched has handed over bytes
        self._closed = False
        self._lock = threading.Condition()
        self._thread = threading.Thread(target=self._fetch, name="hls-segments", daemon=True)
        self._thread.start()

    # --- the demuxing thread

    def read(self, size: int) -> bytes:
        with self._lock:
            while not (self._chunks or self._done):
                left = self._progress_at + self.patience_s - time.monotonic()
                if left <= 0:
                    self._failure = SegmentFailed(self._timed_out(), self._started)
                    self._done = True  # the input ends here (the fetching thread stops)
                    break
                self._lock.wait(left)
            if not self._chunks:
                return b""  # the end: of the playlist, or where a segment failed (`ended`)
            chunk = self._chunks.popleft()
            if len(chunk) > size:
                chunk, rest = chunk[:size], chunk[size:]
                self._chunks.appendleft(rest)
            self._held -= len(chunk)
            if self._held <= AHEAD_BYTES // 2:
                self._lock.notify_all()  # the fetching thread refills, once it is half empty
            return chunk

    @property
    def failure(self) -> SegmentFailed | None:
        """Why the input ended short, once it did."""
        with self._lock:
            return self._failure

    def ended(self) -> bool:
        """Once `read` ended the input: True when every segment came whole; else raises the
        SegmentFailed that ended it."""
        with self._lock:
            if self._failure is not None:
                raise self._failure
            return self._whole

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._chunks.clear()
            self._lock.notify_all()

    def _timed_out(self) -> SourceError:
        return SourceUnavailable(
            f"timed out reading {redact(self.playlist.url)}: no progress fetching its segments "
            f"for {self.patience_s:g} s", reason="timeout")

    # --- the fetching thread

    def _fetch(self) -> None:
        failure = None
        whole = False
        url = self.playlist.url
        try:
            for url in self.playlist.segments:
                if not self._fetch_one(url):
                    break
            else:
                whole = True
        except (av.error.FFmpegError, OSError) as exc:
            failure = map_av_error(exc, url)
        except SourceError as exc:
            failure = exc
        except Exception as exc:  # a bug must not pass for the playlist's end
            log.exception("hls_vod.fetch_failed url=%s", redact(url))
            failure = SourceError(f"fetching {redact(url)} failed: {redact(repr(exc))}")
        finally:
            with self._lock:
                if not self._done:
                    if failure is not None:
                        self._failure = SegmentFailed(failure, self._started)
                    self._whole = whole and not self._closed  # (whole: nothing raised)
                    self._done = True
                self._lock.notify_all()

    def _fetch_one(self, url: str) -> bool:
        """Fetch one segment into the buffer; False once the stream was closed."""
        with self._lock:
            if self._closed or self._done:  # (done: the reader gave up waiting)
                return False
        with av.open(url, format="data", options=self.options) as container:
            with self._lock:
                self._progress_at = time.monotonic()
            size, got = container.size, 0
            for packet in container.demux():
                if not packet.size:
                    continue
                chunk = bytes(packet)
                got += len(chunk)
                with self._lock:
                    if self._held >= AHEAD_BYTES:
                        self._lock.wait_for(
                            lambda: self._closed or self._held <= AHEAD_BYTES // 2)
                    if self._closed or self._done:  # (done: the reader gave up waiting)
                        return False
                    self._chunks.append(chunk)
                    self._held += len(chunk)
                    self._started = True
                    self._progress_at = time.monotonic()
                    if len(self._chunks) == 1:
                        self._lock.notify_all()  # the demuxing thread may be waiting
        # FFmpeg ends a read cut short as cleanly as a whole one when the server takes byte
        # ranges but refuses the request for the rest
        if size > 0 and got < size:
            raise SourceEnded(f"segment cut short at {got} of {size} bytes: {redact(url)}")
        with self._lock:
            self._started = False
        return True
