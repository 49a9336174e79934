"""What a source read again skips: the packets its jobs were handed before.

Two sources are read again over what their jobs already have. A file over HTTP(S) whose
connection broke at a server without byte ranges (one that takes them is asked for the rest by
FFmpeg itself, `reconnect`) can only be sent again from its start. A live HLS playlist read
after an outage starts a few segments back from its live edge (FFmpeg's `live_start_index`, -3),
among segments the jobs recorded. Either way the camera remembers, per source, what was handed
over (`HandedOver`: per stream the last timestamp, the first video packet; for a live
playlist also the video key frames of the last `LIVE_REPEAT_SECONDS`), and the next session
skips those packets, so no frame is recorded twice.

A skip has to be earned: a session skips only once its first video packet (a file's) or its
first video key frame (a live playlist's) is one that was handed over before, by timestamp and
CRC-32 of its payload. A live stream that merely gave a Content-Length, or an encoder that
restarted its clock, sends other pictures: nothing of it is skipped. Until then every packet is
delivered; a job's recorder drops whatever comes before the key frame that starts its next run,
so that costs nothing. A live playlist's skip also reaches back at most `LIVE_REPEAT_SECONDS`,
and ends at the first video key frame the jobs were not handed (a playlist that goes on, after
a discontinuity, with a restarted encoder's segments).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from fractions import Fraction

import av

from collector.media.opener import FileIdentity, HandedOver
from collector.media.packets import MediaPacket

LIVE_PLAYLIST = FileIdentity(size=-1, duration=None)
LIVE_REPEAT_SECONDS = 120


def identity(container: av.container.InputContainer, finite: bool) -> FileIdentity | None:
    """What must not have changed for a session to skip what the last one handed over: the
    file (its size and duration), any live playlist at the URL; None for other sources."""
    if finite:
        return FileIdentity(container.size, container.duration)
    if container.format.name == "hls":
        return LIVE_PLAYLIST
    return None


def signature(data: bytes | memoryview, ts: int) -> tuple[int, int]:
    return ts, zlib.crc32(data)


class Skips:
    """What one session skips of what its jobs were handed before (`skips`, per packet)."""

    def __init__(self, before: HandedOver, file: FileIdentity, video: int,
                 time_bases: Mapping[int, Fraction]) -> None:
        self.video = video
        self.live = file == LIVE_PLAYLIST
        self.last = dict(before.last)
        self.low = ({index: last - int(LIVE_REPEAT_SECONDS / time_bases[index])
                     for index, last in self.last.items() if index in time_bases}
                    if self.live else {})
        self.proof = set(before.keys) if self.live else {before.first.get(video)}
        self.proven = False

    def __bool__(self) -> bool:
        return bool(self.last)

    def skips(self, packet: av.Packet, index: int) -> bool:
        """Is `packet` one the jobs had? Once a stream's packets are past that point they are
        all new: its entry goes; all go when the proof fails."""
        ts = packet.dts if packet.dts is not None else packet.pts
        if ts is None:
            return False
        if not self.proven:
            if index != self.video or (self.live and not packet.is_keyframe):
                return False  # delivered (see the module's docstring)
            if signature(memoryview(packet), ts) not in self.proof:
                self.last.clear()  # not what was read before: nothing is skipped
                return False
            self.proven = True
        elif (self.live and index == self.video and packet.is_keyframe
              and signature(memoryview(packet), ts) not in self.proof):
            # a key frame the jobs were not handed: from here on it is all new (a playlist
            # that goes on, after a discontinuity, with a restarted encoder's clock)
            self.last.clear()
            return False
        last = self.last.get(index)
        if last is None:
            return False
        low = self.low.get(index)
        if ts <= last and (low is None or ts > low):
            return True
        del self.last[index]
        return False


def handed_over(batch: list[MediaPacket], streams: int, video: int, live: bool,
                first_wanted: bool) -> HandedOver:
    """What `batch` (of `streams` streams) hands over: per stream index its last timestamp,
    and, if `first_wanted` (the source's first video packet may be in it), its first video
    packet; for a live playlist, its video key frames, and the horizon (LIVE_REPEAT_SECONDS
    before its last video timestamp) before which older ones can go."""
    first: dict[int, tuple[int, int]] = {}
    keys: list[tuple[int, int]] = []
    for media in batch:
        if media.stream != video:
            continue
        ts = media.dts if media.dts is not None else media.pts
        if ts is None:
            continue
        if first_wanted and not first:
            first[video] = signature(media.data, ts)
        if not live:
            break
        if media.keyframe:
            keys.append(signature(media.data, ts))
    last: dict[int, int] = {}
    horizon = None
    for media in reversed(batch):
        ts = media.dts if media.dts is not None else media.pts
        if ts is not None and media.stream not in last:
            last[media.stream] = ts
            if live and media.stream == video:
                horizon = ts - int(LIVE_REPEAT_SECONDS / media.time_base)
            if len(last) == streams:
                break
    return HandedOver(first, last, tuple(keys), horizon)


# Demuxers that, when their input fails, hand out what they had of the packet in progress, cut
# where the bytes stopped: MPEG-TS each stream's, FLV the one it was reading (av_get_packet).
TORN_TAIL_FORMATS = frozenset({"mpegts", "flv", "live_flv"})


def without_torn_tails(batch: list[MediaPacket]) -> list[MediaPacket]:
    """`batch` without each stream's last packet, for a source in TORN_TAIL_FORMATS whose input
    failed: its last packets may be cut short (a frame that fails to decode at the end of the
    segment). A whole one dropped here is read again when the file is; a live stream loses it
    in the outage."""
    seen: set[int] = set()
    kept = []
    for media in reversed(batch):
        if media.stream in seen:
            kept.append(media)
        seen.add(media.stream)
    kept.reverse()
    return kept
