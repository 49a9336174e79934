"""The shared read timer of RTSP sessions: when a playing session reads its socket again."""

from __future__ import annotations

from typing import Protocol

import trio

from collector.inflight import InFlight


class Requests(Protocol):
    """HTTP requests in flight (collector/inflight.py)."""

    def busy(self) -> bool: ...

    async def wait_idle(self) -> None: ...


class Ticker:
    """Wakes waiting sessions every `period`, with one timer per phase rather than one per session.

    A session waits here between reads. Each session sleeping on its own deadline costs trio a
    timer, a cancellation and an exception per wake-up (measured: ~0.2 ms of CPU a wake-up with
    30 cameras); parked tasks are only rescheduled. The first waiter of a phase sleeps on behalf
    of that phase.

    HTTP requests go first. In one scheduler pass, ten sessions take ~15-20 ms at 100 cameras,
    and a request takes a dozen steps, each of which waits for the pass under way when it
    became ready: `POST /collect` waited 100-400 ms (p99) at 100 cameras. So while `requests`
    are in flight (collector/inflight.py), a phase whose time has come waits up to
    `defer_s` for the requests to be answered; a camera read 50 ms late loses nothing (the
    socket buffers hold seconds). If the requests are still not answered, its sessions run one
    after another, one per pass, each waking the next as it starts, so that a request's step
    waits for one session's read (~2 ms) rather than ten. Neither is the rule when no request
    is in flight, because it costs CPU: at 50 cameras, one session a pass cost 1.10x and 1.16x
    the CPU (paired, both orders), most likely because depacketizing one camera and muxing
    another then alternate in every pass instead of each running for ten in a row.

    Sessions fill phases up to `per_phase` each before another phase is used, so that the process
    wakes as seldom as the latency allows. A wake-up of a few sessions costs far more than its
    share: the scheduler pass, the epoll round, and caches the other processes of the machine
    have since filled (measured at 50 cameras, paired: phases of ~10 sessions used 0.87x the CPU
    of 20 phases of 2-3). `per_phase` bounds how long a phase's round takes (~2 ms a session),
    within the time to the next phase. Phases are taken in bit-reversed order, which spreads the
    ones in use about evenly over the period.
    """

    def __init__(self, period: float, phases: int = 10, per_phase: int = 1,
                 requests: Requests | None = None, defer_s: float = 0.0) -> None:
        self.period, self.phases, self.per_phase = period, phases, max(1, per_phase)
        # none in flight unless told (collector.inflight counts the service's)
        self.requests: Requests = requests if requests is not None else InFlight()
        self.defer_s = defer_s
        self._waiting = [trio.lowlevel.ParkingLot() for _ in range(phases)]  # the next round
        self._turns = [trio.lowlevel.ParkingLot() for _ in range(phases)]  # this round, in turn
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
            await self._waiting[phase].park()
            self._next(phase)
            return
        self._sleeping[phase] = True
        try:
            offset = self.period * phase / self.phases
            now = trio.current_time() - offset
            await trio.sleep_until((now // self.period + 1) * self.period + offset)
            if self.requests.busy():  # requests being answered go first: the round waits a little
                with trio.move_on_after(self.defer_s):
                    await self.requests.wait_idle()
        finally:
            self._sleeping[phase] = False
            # This round is who waits now; whoever comes back meanwhile waits for the next one.
            self._waiting[phase].repark_all(self._turns[phase])
            self._next(phase)

    def _next(self, phase: int) -> None:
        """Wake the rest of this round: all of it, or, while busy, the next one only (it runs in
        the next scheduler pass, and wakes the one after it)."""
        if self.requests.busy():
            self._turns[phase].unpark()
        else:
            self._turns[phase].unpark_all()


def _spread(n: int) -> list[int]:
    """0..n-1 in bit-reversed order: each prefix is spread about evenly over the range."""
    bits = max(1, (n - 1).bit_length())
    reversed_ = (int(f"{i:0{bits}b}"[::-1], 2) for i in range(1 << bits))
    return [i for i in reversed_ if i < n]
