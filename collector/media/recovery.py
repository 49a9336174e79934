"""After a crash: the segment files a killed process left open, listed with their jobs.

A segment is listed (and so downloadable) once it is closed and fsync'ed. A process killed
mid-segment leaves the open one on disk, readable up to its last fragment (segments.py), but in
no job's record: from the API the crash then cost the whole segment, not the ~1 s the files
lose. At start-up, for each job the crash interrupted, `leftovers` finds such files next to the
listed ones and describes them from their own packets (they end with reason "crash"). A file with
no whole video frame (opened just before the kill) or that FFmpeg cannot read is left unlisted.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import av.error

from collector.media.segments import FORMATS
from collector.numbers import ascii_int

log = logging.getLogger(__name__)

_FORMAT_BY_EXT = {ext: name for name, (_, ext, _) in FORMATS.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class Leftover:
    """A segment file a crash left unlisted, described from its packets."""

    index: int
    path: Path
    start_time: float  # wall clock: the file's last change less its duration
    end_time: float  # the file's last change
    duration: float
    bytes: int
    frames: int
    keyframes: int
    format: str
    codec: str


def leftovers(folder: Path, listed: set[int]) -> list[Leftover]:
    """The readable segment files in `folder` whose index is not in `listed`, by index."""
    found = []
    try:
        names = os.listdir(folder)
    except OSError:  # no folder: the source never opened a segment
        return []
    for name in names:
        path = folder / name
        stem, ext = os.path.splitext(name)
        index = ascii_int(stem.removeprefix("segment-"), most_digits=9)
        if not stem.startswith("segment-") or index is None or ext not in _FORMAT_BY_EXT:
            continue
        if index in listed:
            continue
        if (leftover := describe(path, index, _FORMAT_BY_EXT[ext])) is not None:
            found.append(leftover)
    return sorted(found, key=lambda leftover: leftover.index)  # past 99999 names do not sort


def describe(path: Path, index: int, fmt: str) -> Leftover | None:
    """`path`'s video frames, key frames, duration and codecs; None if it has no whole frame."""
    try:
        stat = path.stat()
        with av.open(str(path)) as container:
            return _describe(container, path, index, fmt, stat)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        log.warning("recovery.unreadable path=%s error=%s", path, exc)
        return None


def _describe(container: Any, path: Path, index: int, fmt: str,
              stat: os.stat_result) -> Leftover | None:
    video = next((s for s in container.streams if s.type == "video"), None)
    if video is None or video.time_base is None:
        return None
    codecs = [s.codec_context.name for s in container.streams if s.type in ("video", "audio")]
    frames = keyframes = 0
    first = end = None
    for packet in container.demux(video):
        # corrupt: a sample the file's index lists but whose bytes the kill cut short
        if packet.size == 0 or packet.pts is None or packet.is_corrupt:
            continue
        frames += 1
        keyframes += packet.is_keyframe
        first = packet.pts if first is None else min(first, packet.pts)
        end = max(end or 0, packet.pts + (packet.duration or 0))
    if first is None or end is None:  # no whole frame
        return None
    duration = round(float((end - first) * video.time_base), 6)
    return Leftover(
        index=index, path=path, start_time=stat.st_mtime - duration, end_time=stat.st_mtime,
        duration=duration, bytes=stat.st_size, frames=frames, keyframes=keyframes, format=fmt,
        codec="+".join(codecs),
    )
