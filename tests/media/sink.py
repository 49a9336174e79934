"""A packet sink for tests of one opener, without a camera or jobs."""

from __future__ import annotations

from collector.media.opener import Written


class CountingSink:
    """A PacketSink counting what it gets: sessions opened, packets, video packets."""

    def __init__(self) -> None:
        self.sessions = 0
        self.count = self.video = 0
        self._video_index: int | None = None

    def opened(  # type: ignore[no-untyped-def]
            self, streams, reconfigured=False, max_jump=None) -> None:
        self.sessions += 1
        self._video_index = next(s.index for s in streams if s.kind == "video")

    def packets(self, batch) -> None:
        self.count += len(batch)
        self.video += sum(p.stream == self._video_index for p in batch)

    async def packets_paced(self, batch, written=None) -> None:
        self.packets(batch)

    def write_here(self, batch) -> Written:  # nobody lent a recorder
        return Written(subscribers=frozenset(), everyone=False, packets=len(batch), bytes=0)

    def packets_written(self, written) -> None:
        raise AssertionError("nobody lent a recorder, so nobody wrote a batch")

    def read_before(self, file) -> None:  # type: ignore[no-untyped-def]
        return None  # every session reads its file from the start

    def handed_over(self, file, until) -> None:  # type: ignore[no-untyped-def]
        pass

    def reading(self) -> None:
        pass
