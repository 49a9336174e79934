"""The shared read timer of RTSP sessions: when a playing session reads its socket again."""

from __future__ import annotations

import trio


class Ticker:
    """Wakes waiting sessions every `period`, with one timer per phase rather than one per session.

    A session waits here between reads. Each session sleeping on its own deadline costs trio a
    timer, a cancellation and an exception per wake-up (measured: ~0.2 ms of CPU a wake-up with
    30 cameras); parked tasks are only rescheduled. The first waiter of a phase sleeps on behalf
    of that phase.

    Sessions fill phases up to `per_phase` each before another phase is used, so that the process
    wakes as seldom as the latency allows. A wake-up of a few sessions costs far more than its
    share: the scheduler pass, the epoll round, and caches the other processes of the machine
    have since filled (measured at 50 cameras, paired: phases of ~10 sessions used 0.87x the CPU
    of 20 phases of 2-3). `per_phase` bounds the burst instead: a hundred cameras do not all wake
    in the same scheduler pass, where an HTTP request waiting behind them would wait for all of
    their depacketizing and muxing (~0.8 ms a session per read). Phases are taken in
    bit-reversed order, which spreads the ones in use about evenly over the period.
    """

    def __init__(self, period: float, phases: int = 10, per_phase: int = 1) -> None:
        self.period, self.phases, self.per_phase = period, phases, max(1, per_phase)
        self._lots = [trio.lowlevel.ParkingLot() for _ in range(phases)]
        self._sleeping = [False] * phases
        self._members = [0] * phases  # sessions that joined each phase and have not left
        self._order = _spread(phases)

    def join(self) -> int:
        """A phase for a new session: the first in spread order with room, else the emptiest.
        Pair with `leave`."""
        members = self._members
        phase = next((p for p in self._order if members[p] < self.per_phase), None)
        if phase is None:
            phase = min(self._order, key=members.__getitem__)
        members[phase] += 1
        return phase

    def leave(self, phase: int) -> None:
        self._members[phase] -= 1

    async def wait(self, phase: int = 0) -> None:
        if self._sleeping[phase]:
            await self._lots[phase].park()
            return
        self._sleeping[phase] = True
        try:
            offset = self.period * phase / self.phases
            now = trio.current_time() - offset
            await trio.sleep_until((now // self.period + 1) * self.period + offset)
        finally:
            self._sleeping[phase] = False
            self._lots[phase].unpark_all()


def _spread(n: int) -> list[int]:
    """0..n-1 in bit-reversed order: each prefix is spread about evenly over the range."""
    bits = max(1, (n - 1).bit_length())
    reversed_ = (int(f"{i:0{bits}b}"[::-1], 2) for i in range(1 << bits))
    return [i for i in reversed_ if i < n]
