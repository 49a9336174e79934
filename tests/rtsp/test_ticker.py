"""The shared read timer of RTSP sessions, under a virtual clock (no sockets, no threads)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from collector.rtsp.ticker import Ticker


async def test_waiters_of_a_phase_wake_together_at_their_offset(autojump_clock):
    ticker = Ticker(0.2, phases=4)
    woke: list[tuple[str, float]] = []

    async def waiter(name: str, phase: int, rounds: int) -> None:
        for _ in range(rounds):
            await ticker.wait(phase)
            woke.append((name, round(trio.current_time(), 6)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "a", 1, 2)
        nursery.start_soon(waiter, "b", 1, 2)  # parks behind a's timer
        nursery.start_soon(waiter, "c", 0, 1)
        nursery.start_soon(waiter, "d", 3, 1)
    assert sorted(woke, key=lambda w: (w[1], w[0])) == [
        ("a", 0.05), ("b", 0.05), ("d", 0.15), ("c", 0.2), ("a", 0.25), ("b", 0.25),
    ]


async def test_a_cancelled_sleeper_hands_its_phase_on(autojump_clock):
    """The waiter whose timer serves the phase leaves early: the others still wake, and the next
    wait of the phase starts a timer of its own."""
    ticker = Ticker(1.0, phases=2)
    woke: list[float] = []

    async def follower() -> None:
        await ticker.wait(0)
        woke.append(trio.current_time())
        await ticker.wait(0)
        woke.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        with trio.move_on_after(0.3):
            async with trio.open_nursery() as leader:
                leader.start_soon(ticker.wait, 0)
                await trio.sleep(0.1)
                nursery.start_soon(follower)
                await trio.sleep_forever()
    assert [round(t, 6) for t in woke] == [0.3, 1.0]


def test_sessions_fill_a_phase_before_the_next_which_is_spread_out() -> None:
    """Few wake-ups (a phase holds `per_phase` sessions), used phases spread over the period,
    and once every phase is full, the emptiest; a session that leaves makes room."""
    ticker = Ticker(0.4, phases=8, per_phase=2)
    assert [ticker.join() for _ in range(6)] == [0, 0, 4, 4, 2, 2]
    assert [ticker.join() for _ in range(10)] == [6, 6, 1, 1, 5, 5, 3, 3, 7, 7]
    assert [ticker.join() for _ in range(3)] == [0, 4, 2]  # all full: the emptiest, in order
    ticker.leave(6)
    ticker.leave(6)
    ticker.leave(0)
    assert [ticker.join() for _ in range(3)] == [6, 6, 0]


def test_one_phase_per_session_with_room_for_one() -> None:
    ticker = Ticker(0.2, phases=4)  # per_phase=1: one session a phase, as before
    assert [ticker.join() for _ in range(5)] == [0, 2, 1, 3, 0]


class PassCounter(trio.abc.Instrument):
    """Counts the scheduler's passes (one I/O poll each)."""

    def __init__(self) -> None:
        self.passes = 0

    def after_io_wait(self, timeout: float) -> None:
        self.passes += 1


@pytest.fixture
async def counter() -> AsyncIterator[PassCounter]:
    """A pass counter, instrumenting the test's run."""
    counting = PassCounter()
    trio.lowlevel.add_instrument(counting)
    yield counting
    trio.lowlevel.remove_instrument(counting)


class Requests:
    """Requests in flight, as the test says: `busy` until `answered` is set."""

    def __init__(self, busy: bool) -> None:
        self.answered = trio.Event()
        if not busy:
            self.answered.set()

    def busy(self) -> bool:
        return not self.answered.is_set()

    async def wait_idle(self) -> None:
        await self.answered.wait()


@pytest.mark.parametrize("busy", [True, False])
async def test_while_busy_a_round_wakes_its_sessions_one_at_a_time(autojump_clock, counter,
                                                                    busy: bool):
    """While a request is in flight (past the deferral), the sessions of a phase wake one at a
    time, each in a pass of its own; otherwise all at once. Either way, a session back from its
    read waits for the next round, not this one."""
    ticker = Ticker(0.4, phases=2, requests=Requests(busy))
    woke: list[tuple[str, float, int]] = []

    async def session(name: str, rounds: int) -> None:
        for _ in range(rounds):
            await ticker.wait(0)
            woke.append((name, round(trio.current_time(), 6), counter.passes))

    async with trio.open_nursery() as nursery:
        for name in "abcd":
            nursery.start_soon(session, name, 2)
    assert [at for _, at, _ in woke] == [0.4] * 4 + [0.8] * 4
    for first in (0, 4):
        assert {name for name, _, _ in woke[first:first + 4]} == set("abcd")
        passes = [p for _, _, p in woke[first:first + 4]]
        if busy:  # the three followers two passes apart (their jobs' pass between them), the
            # leader once it has woken the last one
            assert sorted(passes) == [passes[0] + d for d in (0, 2, 3, 4)]
        else:
            assert passes[1:] == [passes[0] + 1] * 3  # the leader, then the others in one pass


async def test_a_round_wakes_per_pass_sessions_at_a_time(autojump_clock, counter):
    """With `per_pass`, a round's sessions wake that many at a time, each lot two passes after
    the last (its reads, then its jobs), never two lots in one pass."""
    ticker = Ticker(0.4, phases=1, per_pass=2)
    woke: list[tuple[str, int]] = []

    async def session(name: str) -> None:
        await ticker.wait(0)
        woke.append((name, counter.passes))

    async with trio.open_nursery() as nursery:
        for name in "abcdefg":
            nursery.start_soon(session, name)
    assert {name for name, _ in woke} == set("abcdefg")
    first = min(p for _, p in woke)
    # lots of two at passes +0, +2, +4; the leader goes on with the last lot woken (+3)
    assert sorted(p - first for _, p in woke) == [0, 0, 2, 2, 3, 4, 4]


async def test_a_leader_cancelled_while_waking_its_round_wakes_the_rest(autojump_clock):
    """The session driving a round leaves between two lots (here the first follower to wake
    stops it): the rest of the round wakes at once, in the next pass, not never."""
    ticker = Ticker(0.4, phases=1, per_pass=1)
    woke: list[tuple[str, float]] = []
    leader_scope = trio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await ticker.wait(0)
            woke.append(("leader", trio.current_time()))

    async def follower(name: str) -> None:
        await ticker.wait(0)
        woke.append((name, trio.current_time()))
        leader_scope.cancel()

    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(leader)
            await trio.sleep(0.1)  # the leader sleeps for the round due at 0.4
            for name in "abc":
                nursery.start_soon(follower, name)
    assert [at for _, at in woke] == [0.4] * 3
    assert sorted(name for name, _ in woke) == ["a", "b", "c"]


async def test_a_round_waits_a_little_for_requests_in_flight(autojump_clock):
    """A phase due while a request is being answered starts when the request is answered, or
    after `defer_s` at the latest."""
    requests = Requests(busy=True)
    ticker = Ticker(0.4, phases=2, requests=requests, defer_s=0.05)
    woke: list[float] = []

    async def session(rounds: int) -> None:
        for _ in range(rounds):
            await ticker.wait(0)
            woke.append(round(trio.current_time(), 6))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(session, 3)
        await trio.sleep(0.81)
        requests.answered.set()  # answered 10 ms into the second round's deferral
    assert woke == [0.45, 0.81, 1.2]  # 50 ms late at most, on time once nothing is in flight
