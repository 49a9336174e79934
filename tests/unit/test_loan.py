"""Lending a job's recorder to its camera's reading thread (actors/loan.py), and the camera's side
of it with a scripted source that can wait (paced): batches reach each recorder once, in order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import trio

from actors.backoff import RetryPolicy
from actors.camera import Camera
from actors.loan import RecorderLoan
from actors.messages import AddSubscriber, Packets, Recorded, SourceDown
from collector.errors import SourceEnded
from collector.media.opener import PacketSink
from collector.media.packets import MediaPacket, SessionInfo
from collector.media.pyav_source import _PacedHandOver
from collector.media.recorder import Progress
from tests.unit.fakes import STREAMS, TB

POLICY = RetryPolicy(initial_backoff=0.5, max_backoff=4.0, jitter=0.0)


def batch(n: int, size: int = 3) -> list[MediaPacket]:
    """Batch `n`: frames n*size .. n*size+size-1."""
    return [MediaPacket(stream=0, data=b"x", pts=f * 3600, dts=f * 3600, duration=3600,
                        keyframe=f % 25 == 0, time_base=TB)
            for f in range(n * size, (n + 1) * size)]


def number(b: Sequence[MediaPacket], size: int = 3) -> int:
    assert b[0].pts is not None
    return b[0].pts // 3600 // size


@dataclass
class FakeRecorder:
    """Stands in for a Recorder: notes which batches it was given, from which thread."""

    done_after: int | None = None  # the batch numbered so ends the recording
    fail_on: int | None = None
    batches: list[int] = field(default_factory=list)
    sessions: int = 0
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event | None = None  # when set, a write waits for it
    wait_on: int | None = None  # ...only the write of the batch numbered so (None: every one)

    def new_session(self, session: SessionInfo) -> Progress:
        self.sessions += 1
        return Progress((), (), False)

    def write(self, packets: Sequence[MediaPacket]) -> Progress:
        n = number(packets)
        if self.release is not None and self.wait_on in (None, n):
            self.entered.set()
            self.release.wait(10)
        if n == self.fail_on:
            raise OSError("disk full")
        self.batches.append(n)
        return Progress((n,), (n,), n == self.done_after)  # type: ignore[arg-type]  # batch n


def values(results: list) -> list[int]:
    return [r.unwrap().steps[0] for r in results]


async def test_a_recorder_is_written_by_the_thread_only_while_lent():
    """Held at first; lent once the job has handled every event the camera held it for; each
    event on its way takes it back. What the thread wrote waits in the loan, in order. Lent for
    the session the recorder is in only: a batch of another session is refused."""
    rec = FakeRecorder()
    loan = RecorderLoan(rec)  # type: ignore[arg-type]
    assert not loan.write_here(batch(0), 1)  # the job has not had its session yet
    loan.hold()  # the camera sends the session
    loan.handled(1)
    assert loan.write_here(batch(1), 1) and loan.write_here(batch(2), 1)
    loan.hold()  # a batch the thread did not write, and then the end of the session
    loan.hold()
    assert not loan.write_here(batch(3), 1)
    assert values(await loan.take()) == [1, 2]
    loan.recorder.write(batch(3))  # the job writes what it was sent itself
    loan.handled(1)
    assert not loan.write_here(batch(4), 1), "one event is still unhandled"
    loan.handled(None)  # the end of the session
    assert not loan.write_here(batch(4), 1), "a batch of a session that ended"
    loan.hold()  # the next session
    loan.handled(2)
    assert not loan.write_here(batch(4), 1), "a batch of the session before"
    assert loan.write_here(batch(4), 2)
    assert values(loan.results()) == [4]
    assert rec.batches == [1, 2, 3, 4]


async def test_taking_the_recorder_back_waits_for_the_batch_being_written():
    """The job never touches the recorder while the thread writes with it: `take` waits for the
    batch, returns what it gave, and the thread does not get the recorder again."""
    rec = FakeRecorder(release=threading.Event())
    loan = RecorderLoan(rec)  # type: ignore[arg-type]
    loan.hold()
    loan.handled(1)
    taken: list[list] = []
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, loan.write_here, batch(0), 1)
            await trio.to_thread.run_sync(rec.entered.wait)

            async def take() -> None:
                taken.append(await loan.take())

            nursery.start_soon(take)
            await trio.sleep(0.05)
            assert taken == [], "took the recorder while the thread was writing with it"
            rec.release.set()  # type: ignore[union-attr]
    assert [values(t) for t in taken] == [[0]]
    assert not loan.write_here(batch(1), 1)
    assert loan.recorder is rec


async def test_the_batch_that_ends_or_fails_a_recording_ends_the_loan():
    """After a batch that finished the recording, or failed, the thread never writes again, even
    if the job handles more events; the failure reaches the job as the write's outcome."""
    for rec in (FakeRecorder(done_after=1), FakeRecorder(fail_on=1)):
        loan = RecorderLoan(rec)  # type: ignore[arg-type]
        loan.hold()
        loan.handled(1)
        assert loan.write_here(batch(0), 1) and loan.write_here(batch(1), 1)
        loan.hold()
        loan.handled(1)
        assert not loan.write_here(batch(2), 1)
        results = loan.results()
        if rec.fail_on is None:
            assert [r.unwrap().done for r in results] == [False, True]
        else:
            assert isinstance(results[1].error, OSError)  # type: ignore[union-attr]
        assert rec.batches == [0, 1] if rec.fail_on is None else rec.batches == [0]


@dataclass
class PacedOpener:
    """A source that can wait, played in the trio thread: per batch, what PyAVOpener does in its
    worker thread (lent recorders write it, then it is reported, or handed over and waited for)."""

    batches: int
    interval: float = 0.1
    gate: trio.Event = field(default_factory=trio.Event)  # batch `gate_at` waits for it
    gate_at: int = -1
    runs: int = 0

    async def run(self, url: str, options: Mapping[str, str], sink: PacketSink) -> None:
        self.runs += 1
        if self.runs > 1:  # one session only
            await trio.sleep_forever()
        sink.opened(STREAMS)
        for n in range(self.batches):
            if n == self.gate_at:
                await self.gate.wait()
            await trio.sleep(self.interval)
            written = sink.write_here(batch(n))
            if written.everyone:
                sink.packets_written(written)
            else:
                await sink.packets_paced(batch(n), written)
        raise SourceEnded("eof")


async def play_job(loan: RecorderLoan, receive: trio.MemoryReceiveChannel,
                   events: list[str], *, outlives_outages: bool = False) -> None:
    """What a job's source task does with its camera events (actors/job.py, in short). With
    `outlives_outages`, as a job's source does: after `SourceDown` it lends its recorder again,
    for the next session; without, it stops there."""
    async for event in receive:
        if isinstance(event, Recorded):
            events += [f"wrote {number_of(r)}" for r in loan.results()]
            continue
        events += [f"wrote {number_of(r)}" for r in await loan.take()]
        match event:
            case SessionInfo():
                loan.recorder.new_session(event)
                events.append("session")
            case Packets():
                loan.recorder.write(event.batch)
                events.append(f"got {number(event.batch)}")
            case SourceDown():
                events.append("down")
                if not outlives_outages:
                    return
        loan.handled(None if isinstance(event, SourceDown) else event.session)


def number_of(result: object) -> int:
    return result.unwrap().steps[0]  # type: ignore[attr-defined]


async def test_paced_batches_reach_each_recorder_once_in_order(autojump_clock):
    """Jobs that lent their recorder have a paced camera's batches written where they are read
    (`Recorded`), every batch once, in order. A job that joins mid-way starts with the next batch;
    until it has handled its session it is sent the batches to write itself (`Packets`), and then
    lends its recorder too. A subscriber that lent nothing is sent `Packets` throughout."""
    opener = PacedOpener(batches=12, gate_at=4)
    camera = Camera("http://h/x.ts", {}, opener, POLICY)
    first, second = FakeRecorder(), FakeRecorder()
    loans = [RecorderLoan(first), RecorderLoan(second)]  # type: ignore[arg-type]
    channels = [trio.open_memory_channel[object](100) for _ in range(3)]
    seen: list[list[str]] = [[], []]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(camera.run)
            camera.inbox.send_nowait(AddSubscriber(subscriber=1, channel=channels[0][0],
                                                   loan=loans[0]))
            nursery.start_soon(play_job, loans[0], channels[0][1], seen[0])
            await trio.sleep(1)  # batches 0..3 are written; the source waits at batch 4
            camera.inbox.send_nowait(AddSubscriber(subscriber=2, channel=channels[1][0],
                                                   loan=loans[1]))
            opener.gate.set()
            await trio.sleep(0.25)  # batches 4 and 5 read before the second job looks
            nursery.start_soon(play_job, loans[1], channels[1][1], seen[1])
            await trio.sleep(0.2)
            camera.inbox.send_nowait(AddSubscriber(subscriber=3, channel=channels[2][0]))
            await trio.sleep(10)
            camera.inbox.close()
    assert first.batches == list(range(12))
    assert second.batches == list(range(4, 12))
    assert first.sessions == second.sessions == 1
    assert seen[0] == ["session", *(f"wrote {n}" for n in range(12)), "down"]
    assert seen[1] == ["session", "got 4", "got 5", *(f"wrote {n}" for n in range(6, 12)), "down"]
    third = [e async for e in channels[2][1]]
    assert isinstance(third[0], SessionInfo)
    assert [number(e.batch) for e in third if isinstance(e, Packets)] == list(range(8, 12))
    assert camera.statistics().packets == 12 * 3


@dataclass
class ThreadedPacedOpener:
    """A source that can wait, read in an abandoned-on-cancel worker thread that hands batches over
    as PyAVOpener's does (`_PacedHandOver`): what an abandoned thread does after its session ended
    is what this is for."""

    batches: int
    runs: int = 0
    go: threading.Event = field(default_factory=threading.Event)  # batches wait for it
    finished: threading.Event = field(default_factory=threading.Event)

    async def run(self, url: str, options: Mapping[str, str], sink: PacketSink) -> None:
        self.runs += 1
        if self.runs > 1:  # one session only
            await trio.sleep_forever()
        await trio.to_thread.run_sync(self._read, sink, trio.lowlevel.current_trio_token(),
                                      abandon_on_cancel=True)

    def _read(self, sink: PacketSink, token: trio.lowlevel.TrioToken) -> None:
        try:
            trio.from_thread.run_sync(sink.opened, STREAMS)
            self.go.wait(10)
            hand_over = _PacedHandOver(sink, token)
            for n in range(self.batches):
                hand_over(batch(n), time.monotonic())
        finally:
            self.finished.set()


async def test_a_thread_abandoned_mid_batch_never_writes_after_its_session_ended():
    """The reading thread is stuck writing a batch with one job's recorder (a disk that hangs)
    until the camera's watchdog ends the session and abandons it. Another job, told the session
    is down, handles that and lends its recorder again, for the next session. When the stuck
    write returns, the abandoned thread must not go on to write its old session's batch with
    that recorder: the job has closed its segment for the outage, and a batch there would reach
    a recorder with no open segment (a real Recorder fails the job on an assertion)."""
    stuck = FakeRecorder(release=threading.Event(), wait_on=1)
    other = FakeRecorder()
    opener = ThreadedPacedOpener(batches=2)
    camera = Camera("http://h/x.ts", {}, opener, POLICY, stall_timeout_s=0.5)
    loans = [RecorderLoan(stuck), RecorderLoan(other)]  # type: ignore[arg-type]
    channels = [trio.open_memory_channel[object](100) for _ in loans]
    seen: list[list[str]] = [[], []]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(camera.run)
            for sid, loan, (send, receive), events in zip((1, 2), loans, channels, seen,
                                                          strict=True):
                camera.inbox.send_nowait(AddSubscriber(subscriber=sid, channel=send, loan=loan))
                nursery.start_soon(partial(play_job, loan, receive, events, outlives_outages=True))
            await wait_until(lambda: all(events == ["session"] for events in seen))
            opener.go.set()  # both recorders are lent: the thread writes batch 0 with both
            await trio.to_thread.run_sync(stuck.entered.wait, abandon_on_cancel=True)  # batch 1
            # the other job handled the end of the session and lent its recorder again
            await wait_until(lambda: "down" in seen[1])
            stuck.release.set()  # type: ignore[union-attr]
            await trio.to_thread.run_sync(opener.finished.wait, abandon_on_cancel=True)
            camera.inbox.close()
    assert seen[1] == ["session", "wrote 0", "down"]
    assert other.batches == [0], "the abandoned thread wrote its old session's batch"


async def wait_until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 (a condition of the test's own, no event to wait on)
        await trio.sleep(0.01)
