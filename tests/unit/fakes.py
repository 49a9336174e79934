"""Scripted fakes for unit tests of actor logic (no threads, no sockets: safe under autojump)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction

import trio

from collector.errors import SourceError
from collector.media.opener import PacketSink
from collector.media.packets import MediaPacket, StreamInfo

TB = Fraction(1, 90_000)
STREAMS = (StreamInfo(index=0, kind="video", codec="h264", time_base=TB),)


@dataclass
class Stream:
    """Open, then deliver `batches` batches of `per_batch` frames every `interval` seconds."""

    batches: int
    per_batch: int = 3
    interval: float = 0.1
    then: SourceError | None = None  # raised after the last batch (None: run until cancelled)


@dataclass
class ScriptedOpener:
    script: list[Exception | Stream]  # an exception is raised by that attempt
    open_times: list[float] = field(default_factory=list)
    done: trio.Event = field(default_factory=trio.Event)

    async def run(self, url: str, options: Mapping[str, str], sink: PacketSink) -> None:
        self.open_times.append(trio.current_time())
        if not self.script:
            self.done.set()
            await trio.sleep_forever()
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        sink.opened(STREAMS)
        frame = 0
        for _ in range(step.batches):
            await trio.sleep(step.interval)
            batch = []
            for _ in range(step.per_batch):
                ts = frame * 3600
                batch.append(MediaPacket(stream=0, data=b"x", pts=ts, dts=ts, duration=3600,
                                         keyframe=frame % 25 == 0, time_base=TB))
                frame += 1
            sink.packets(batch)
        if step.then is not None:
            raise step.then
        await trio.sleep_forever()
