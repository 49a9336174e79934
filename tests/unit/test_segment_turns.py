"""Jobs open and close segment files in turn (actors/job.py `Job._write`): a batch is muxed up to
its segment change at once, the change waits for the shared lock, and what it closed is handed to
the announcer before the job goes on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import trio
import trio.testing

from actors.job import Job
from collector.media.recorder import Progress


@dataclass
class FakeRecorder:
    """Pauses before two segment changes in the batch; `calls` says what the job called."""

    calls: list[str] = field(default_factory=list)
    changes_left: int = 2

    def write(self, batch: list[int], *, pause: bool = False) -> Progress:
        assert pause
        self.calls.append(f"write {len(batch)}")
        return Progress((), (), False, paused=True)

    def resume(self) -> Progress:
        self.changes_left -= 1
        self.calls.append("resume")
        closed = ("segment",) if self.changes_left < 1 else ()  # the second change closes one
        return Progress(closed, (1,) * len(closed), False,  # type: ignore[arg-type]
                        paused=self.changes_left > 0)


@dataclass
class FakeAnnouncer:
    put_: list[Progress] = field(default_factory=list)

    def put(self, progress: Progress) -> None:
        self.put_.append(progress)


def job_with(turns: trio.Lock) -> Job:
    return Job(None, None, supervisor=None, log_=None, folder=Path("."),  # type: ignore[arg-type]
               writer_limiter=None, subscriber_buffer=1, segment_turns=turns)  # type: ignore[arg-type]


async def test_segment_changes_wait_for_their_turn():
    turns = trio.Lock()
    recorder, announcer = FakeRecorder(), FakeAnnouncer()
    job = job_with(turns)
    done: list[Progress] = []

    async def write() -> None:
        done.append(await job._write(recorder, announcer, [1, 2, 3]))  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        await turns.acquire()  # another job is changing segments
        nursery.start_soon(write)
        await trio.testing.wait_all_tasks_blocked()
        assert recorder.calls == ["write 3"]  # muxed up to the change, then waits
        turns.release()
    assert recorder.calls == ["write 3", "resume", "resume"]
    assert done[0].segments == ("segment",) and not done[0].paused
    assert announcer.put_ == []  # the last progress is the caller's to announce


async def test_what_a_paused_step_closed_is_announced_before_going_on():
    @dataclass
    class ClosingFirst(FakeRecorder):
        def resume(self) -> Progress:
            self.changes_left -= 1
            self.calls.append("resume")
            return Progress(("first",), (1,), False,  # type: ignore[arg-type]
                            paused=self.changes_left > 0)

    recorder, announcer = ClosingFirst(), FakeAnnouncer()
    progress = await job_with(trio.Lock())._write(recorder, announcer, [1])  # type: ignore[arg-type]
    assert [p.segments for p in announcer.put_] == [("first",)]
    assert progress.segments == ("first",) and not progress.paused
