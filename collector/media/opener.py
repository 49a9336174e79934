"""The small interface a camera actor reads its source through.

An `Opener` connects to one source and streams until it fails, ends or is cancelled. It reports
through a `PacketSink` whose methods are called in the trio thread, in batches, so a camera never
wakes per packet; the one exception is `write_here`, which a paced opener calls in its own worker
thread. PyAV (a worker thread per session), the demo camera and test fakes implement it; the native
RTSP client will too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from collector.media.packets import MediaPacket, StreamInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class Written:
    """What `PacketSink.write_here` did with a batch."""

    subscribers: frozenset[int]  # the jobs that muxed it (opaque to openers)
    everyone: bool  # every job did: nobody waits for the packets themselves
    packets: int
    bytes: int

    def plus(self, later: Written) -> Written:
        """This and a later batch, reported together."""
        return Written(subscribers=self.subscribers | later.subscribers,
                       everyone=self.everyone and later.everyone,
                       packets=self.packets + later.packets, bytes=self.bytes + later.bytes)


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """Tells one file apart from another at the same URL (`PacketSink.read_before`)."""

    size: int  # bytes, as the server gave them (-1: not given)
    duration: int | None  # FFmpeg's, in AV_TIME_BASE units


KEY_FRAMES_KEPT = 2048  # at most, of a live playlist's video key frames (a bound, not a window)


@dataclass(frozen=True, slots=True)
class HandedOver:
    """What a source's subscribers were handed (collector/media/rereads.py): per stream index
    the last timestamp (DTS, else PTS); the first video packet, and for a live playlist the
    video key frames since `horizon` (a video timestamp), each as (timestamp, CRC-32 of its
    payload)."""

    first: Mapping[int, tuple[int, int]]
    last: Mapping[int, int]
    keys: tuple[tuple[int, int], ...] = ()
    horizon: int | None = None  # key frames before it are forgotten (`then`)

    def then(self, later: HandedOver) -> HandedOver:
        """This, followed by `later`."""
        keys = self.keys + later.keys
        if later.horizon is not None:
            keys = tuple(key for key in keys if key[0] >= later.horizon)
        return HandedOver({**later.first, **self.first}, {**self.last, **later.last},
                          keys[-KEY_FRAMES_KEPT:], later.horizon)


class PacketSink(Protocol):
    def opened(self, streams: tuple[StreamInfo, ...], reconfigured: bool = False,
               max_jump: float | None = None) -> None:
        """A session is up; called once per session, before its first packets, and again with
        `reconfigured` when the source describes the same session anew (new codec parameters
        from the next packet on). `max_jump`: SessionInfo.max_jump for the session (a
        description anew keeps the session's)."""

    async def opened_paced(self, streams: tuple[StreamInfo, ...]) -> None:
        """`opened(streams, reconfigured=True)` for a source that can wait: returns once every
        subscriber has room for the new description (a job catching up is waited for, as with
        `packets_paced`, not dropped)."""

    def packets(self, batch: Sequence[MediaPacket]) -> None:
        """A batch of packets, in demux order (a live source: a subscriber that lags is dropped)."""

    async def packets_paced(self, batch: Sequence[MediaPacket], written: Written | None = None,
                            ) -> None:
        """`packets` for a source that can wait (HTTP(S): a file, an HLS playlist): returns
        once every subscriber has room for the batch, so the source is read only as fast as the
        slowest job records it, and no job is dropped for falling behind. `written` is what
        `write_here` returned for this batch."""

    def write_here(self, batch: Sequence[MediaPacket]) -> Written:
        """For a paced source, called in the opener's worker thread (not the trio thread) with
        each batch: the jobs that lent the camera their recorder (actors/loan.py) mux the batch
        here, where it was demuxed, instead of in the trio thread. Then the opener hands the
        batch over with `packets_paced`, or, if `everyone` muxed it, with `packets_written`."""

    def packets_written(self, written: Written) -> None:
        """Every subscriber muxed a paced batch already (`write_here`): count it and tell them.
        Never blocks, so the opener calls it with `TrioToken.run_sync_soon`, without waiting."""

    def read_before(self, file: FileIdentity) -> HandedOver | None:
        """For a file (a finite source) read again after its connection broke, or a live
        playlist after an outage, called in the opener's worker thread once it is open: what
        its subscribers have of it, so that the opener skips those packets (a server without
        byte ranges can only send a file again from its start; a live playlist starts a few
        segments back). None for a source not read before (or a file since changed: another
        size or duration)."""

    def reading(self) -> None:
        """The opener is reading but has nothing to hand over yet (it skips what was read
        before): not a stall. Called in the trio thread (`TrioToken.run_sync_soon`)."""

    def handed_over(self, file: FileIdentity, batch: HandedOver) -> None:
        """Called in the worker thread after each batch of such a source was handed over, with
        what the batch held (`rereads.handed_over`); `read_before` answers their sum
        (`HandedOver.then`)."""


class Opener(Protocol):
    async def run(self, url: str, options: Mapping[str, str], sink: PacketSink) -> None:
        """Stream `url` into `sink` until cancelled.

        Raises a `collector.errors.SourceError` when the source fails or ends; never returns
        normally except when the source had nothing more to give (then it raises SourceEnded).
        """
        ...
