"""The small interface a camera actor reads its source through.

An `Opener` connects to one source and streams until it fails, ends or is cancelled. It reports
through a `PacketSink` whose methods are plain synchronous calls made in the trio thread, in batches,
so a camera never wakes per packet. PyAV (a worker thread per session), the demo camera and test
fakes implement it; the native RTSP client will too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from collector.media.packets import MediaPacket, StreamInfo


class PacketSink(Protocol):
    def opened(self, streams: tuple[StreamInfo, ...]) -> None:
        """A session is up; called once per session, before its first packets."""

    def packets(self, batch: Sequence[MediaPacket]) -> None:
        """A batch of packets, in demux order (a live source: a subscriber that lags is dropped)."""

    async def packets_paced(self, batch: Sequence[MediaPacket]) -> None:
        """`packets` for a source that can wait (HTTP(S): a file, an HLS playlist): returns
        once every subscriber has room for the batch, so the source is read only as fast as the
        slowest job records it, and no job is dropped for falling behind."""


class Opener(Protocol):
    async def run(self, url: str, options: Mapping[str, str], sink: PacketSink) -> None:
        """Stream `url` into `sink` until cancelled.

        Raises a `collector.errors.SourceError` when the source fails or ends; never returns
        normally except when the source had nothing more to give (then it raises SourceEnded).
        """
        ...
