"""The camera actor under a virtual clock: reconnect timing, fan-out, slow subscribers."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

from actors.backoff import RetryPolicy, backoff_delays
from actors.camera import Camera
from actors.messages import AddSubscriber, Packets, RemoveSubscriber, SourceDown
from collector.errors import SourceEnded, SourceUnavailable
from collector.media.packets import SessionInfo
from tests.unit.fakes import ScriptedOpener, Stream

POLICY = RetryPolicy(
    initial_backoff=0.5, max_backoff=4.0, multiplier=2.0, jitter=0.0, stable_after=30
)


def refused() -> SourceUnavailable:
    return SourceUnavailable("connection refused", reason="refused")


def test_backoff_doubles_to_the_cap_with_bounded_jitter():
    assert [next(d) for d in [backoff_delays(POLICY)] for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    jittery = RetryPolicy(initial_backoff=1, max_backoff=8, jitter=0.1)
    for i, delay in zip(range(20), backoff_delays(jittery), strict=False):
        base = min(8, 2**i)
        assert base * 0.9 <= delay <= base * 1.1


async def events_until(camera: Camera, enough: Callable[[list], bool]) -> list:
    """Run `camera` with one subscriber until what it received is `enough`."""
    send, receive = trio.open_memory_channel(100)
    got: list = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(camera.run)
        camera.inbox.send_nowait(AddSubscriber(subscriber=1, channel=send))
        async for event in receive:
            got.append(event)
            if enough(got):
                break
        camera.inbox.close()
    return got


async def test_reconnect_times_follow_backoff(autojump_clock):
    """Three refusals then success: attempts at exactly 0, 0.5, 1.5 and 3.5 virtual seconds, and
    the subscriber hears each failure with its consecutive count."""
    opener = ScriptedOpener([refused(), refused(), refused(), Stream(batches=2)])
    camera = Camera("rtsp://h/x", {}, opener, POLICY)
    got = await events_until(camera, lambda got: sum(isinstance(e, Packets) for e in got) == 2)
    assert opener.open_times == [0, 0.5, 1.5, 3.5]
    assert [e.failures for e in got if isinstance(e, SourceDown)] == [1, 2, 3]
    assert isinstance(got[3], SessionInfo) and got[3].session == 1
    assert camera.statistics().sessions == 1 and camera.statistics().failures == 3


async def test_an_unexpected_error_fails_the_session_not_the_process(autojump_clock):
    """An exception outside our tree (a bug, or a foreign error nobody translated: PyAV's
    ValueError for a codec it cannot template used to end the whole process) fails that
    session, with its text redacted, and the camera reconnects."""
    opener = ScriptedOpener([ValueError("odd codec at rtsp://admin:pw@h/x"), Stream(batches=1)])
    camera = Camera("rtsp://admin:pw@h/x", {}, opener, POLICY)
    got = await events_until(camera, lambda got: isinstance(got[-1], Packets))
    down = got[0]
    assert isinstance(down, SourceDown) and down.failures == 1
    assert down.error.reason == "internal"
    assert str(down.error) == "internal error: odd codec at rtsp://***@h/x"
    assert isinstance(got[1], SessionInfo) and opener.open_times == [0, 0.5]


async def test_stable_session_resets_backoff(autojump_clock):
    """A session that delivered video for longer than `stable_after` resets the failure count."""
    opener = ScriptedOpener([
        refused(), Stream(batches=400, then=SourceEnded("eof")), refused(), Stream(batches=1),
    ])
    camera = Camera("rtsp://h/x", {}, opener, POLICY)
    send, receive = trio.open_memory_channel(1000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(camera.run)
        camera.inbox.send_nowait(AddSubscriber(subscriber=1, channel=send))
        downs = []
        async for event in receive:
            if isinstance(event, SourceDown):
                downs.append(event.failures)
            if len(downs) == 3:
                break
        camera.inbox.close()
    assert downs == [1, 1, 2]  # the 40 s session reset the count
    assert opener.open_times[:3] == pytest.approx([0, 0.5, 0.5 + 40 + 0.5])


async def test_late_subscriber_gets_current_session_and_slow_one_is_dropped(autojump_clock):
    """A subscriber joining mid-session first receives the session's description; one whose buffer
    fills is dropped (its channel closed) while the others keep receiving."""
    opener = ScriptedOpener([Stream(batches=50)])
    camera = Camera("rtsp://h/x", {}, opener, POLICY)
    fast_send, fast = trio.open_memory_channel(1000)
    slow_send, slow = trio.open_memory_channel(3)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(camera.run)
        camera.inbox.send_nowait(AddSubscriber(subscriber=1, channel=fast_send))
        await trio.sleep(1.05)
        camera.inbox.send_nowait(AddSubscriber(subscriber=2, channel=slow_send))
        await trio.sleep(2)
        first = slow.receive_nowait()
        assert isinstance(first, SessionInfo)
        rest = [e async for e in slow]  # ends: dropped
        assert len(rest) == 2
        assert camera.statistics().dropped_subscribers == 1
        assert camera.statistics().subscribers == 1
        camera.inbox.send_nowait(RemoveSubscriber(subscriber=1))
        await trio.sleep(0.5)
        camera.inbox.close()
    got = [e async for e in fast]
    assert isinstance(got[0], SessionInfo)
    assert len([e for e in got if isinstance(e, Packets)]) == 30  # 3 s of 100 ms batches


async def test_a_paced_source_described_anew_waits_for_a_full_subscriber():
    """A file whose H.264 parameters change mid-way is described anew while a job may still be
    catching up (its channel full: the normal state of backpressure). The description waits for
    room, as paced packets do; broadcast, it dropped the job ("fell behind its camera")."""
    from tests.unit.fakes import STREAMS

    camera = Camera("http://h/f.ts", {}, ScriptedOpener([]), POLICY)
    send, receive = trio.open_memory_channel(1)
    camera._handle(AddSubscriber(subscriber=1, channel=send))
    camera.opened(STREAMS)  # fills the subscriber's channel
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(camera.opened_paced, STREAMS)
            await trio.testing.wait_all_tasks_blocked()
            first = await receive.receive()
            second = await receive.receive()
    assert (first.session, first.reconfigured) == (1, False)
    assert (second.session, second.reconfigured) == (2, True)
    assert camera.statistics().dropped_subscribers == 0


def test_a_subscriber_joining_after_a_new_description_hears_a_first_session():
    """A job that joins a camera whose session was described anew (new codec parameters) gets
    that description as its first session, not as a reconfiguration: it counts an attempt, as
    every job joining a session does."""
    from tests.unit.fakes import STREAMS

    camera = Camera("http://h/f.ts", {}, ScriptedOpener([]), POLICY)
    camera.opened(STREAMS)
    camera.opened(STREAMS, True)
    send, receive = trio.open_memory_channel(4)
    camera._handle(AddSubscriber(subscriber=1, channel=send))
    first = receive.receive_nowait()
    assert (first.session, first.reconfigured) == (2, False)


def test_a_file_read_again_skips_what_its_jobs_have():
    """What the reading threads ask and tell a camera's sink about a file (`read_before`,
    `handed_over`): the same file read again gets its first video packet, its last
    timestamps per stream and its key frames; another file at the URL (another size) starts
    afresh; an abandoned session's thread neither reads nor records."""
    from actors.camera import _SessionSink
    from collector.media.opener import FileIdentity, HandedOver

    camera = Camera("http://h/f.ts", {}, ScriptedOpener([]), POLICY)
    file, other = FileIdentity(1000, None), FileIdentity(2000, None)
    first = _SessionSink(camera)
    assert first.read_before(file) is None
    first.handed_over(file, HandedOver({0: (0, 7)}, {0: 900, 1: 800}, ((0, 7),)))
    first.handed_over(file, HandedOver({0: (1000, 8)}, {0: 1800}, ((1000, 8),)))
    first.active = False
    first.handed_over(file, HandedOver({0: (1, 9)}, {0: 9999, 1: 9999}))  # session over
    second = _SessionSink(camera)
    assert second.read_before(file) == HandedOver({0: (0, 7)}, {0: 1800, 1: 800},
                                                  ((0, 7), (1000, 8)))
    third = _SessionSink(camera)
    assert third.read_before(other) is None
    third.handed_over(other, HandedOver({0: (5, 7)}, {0: 5}))
    assert _SessionSink(camera).read_before(file) is None
    dead = _SessionSink(camera)
    dead.active = False
    assert dead.read_before(other) is None


def test_a_batch_a_loan_took_as_its_session_ended_counts_as_handed_over():
    """The reading thread's batch went into a job's lent recorder just before the session was
    abandoned: the job collects it from its loan all the same, so a re-read must skip it."""
    from actors.camera import _SessionSink
    from collector.media.opener import FileIdentity, HandedOver, Written

    camera = Camera("http://h/f.ts", {}, ScriptedOpener([]), POLICY)
    file = FileIdentity(1000, None)
    sink = _SessionSink(camera)
    sink.session = 1
    assert sink.read_before(file) is None
    camera.write_here = lambda batch, session: Written(  # type: ignore[method-assign]
        subscribers=frozenset({7}), everyone=True, packets=len(batch), bytes=1)
    sink.write_here([])
    sink.active = False  # the watchdog ended the session meanwhile
    sink.handed_over(file, HandedOver({0: (0, 7)}, {0: 900}))
    sink.write_here([])  # nothing is written once it is over
    sink.handed_over(file, HandedOver({0: (0, 7)}, {0: 1800}))
    assert _SessionSink(camera).read_before(file) == HandedOver({0: (0, 7)}, {0: 900})
