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

    Sessions fill phases up to `per_phase` each before another phase is used, so that the process
    wakes as seldom as the latency allows. A wake-up costs far more than its share of the work:
    the caches the machine's other processes (here, the cameras' servers) filled while we slept.
    Measured at 50 cameras, paired, both orders: phases of ~10 sessions used 0.87x the CPU of 20
    phases of 2-3; two phases of 25 (in lots of 10, below) 0.969x five of 10; one of 50 0.955x
    two of 25. Phases are taken in bit-reversed order, which spreads the ones in use about evenly
    over the period.

    A round does not run in one scheduler pass, though: its sessions wake `per_pass` at a time,
    each lot two passes after the last (its reads and depacketizing, then the jobs muxing what it
    handed them), so that no pass holds more than `per_pass` sessions' work of one kind (~1.5-2
    ms each). A request takes a dozen steps, each of which waits for the pass under way when it
    became ready, so how much a pass holds, and how many heavy passes follow each other, is a
    trade between CPU and latency. Whole passes of 25 sessions used 0.91x the CPU of phases of 10
    but made `POST /collect` p99 91 ms at 100 cameras; rounds of 50 in lots of 10, POST p99 76 and
    91 ms and WebSocket events from the cut p50 150-185 ms (against 36-147 and 39-73 ms). Rounds
    of 25 in lots of 10, taken here, were within that noise at 100 cameras (four runs each), but
    at 50 cameras events came p50 43-75 ms after the cut instead of 21-29, and POST p99 was 31-90
    ms instead of 21-36: a cut inside a round waits for its remaining passes (BENCHMARKS.md).
    Lots of 5 lost the CPU gain (1.04x lots of 10).

    HTTP requests go first. While `requests` are in flight (collector/inflight.py), a phase
    whose time has come waits up to `defer_s` for them;
    a camera read 50 ms late loses nothing (the socket buffers hold seconds). If they are still
    not answered, the rest of the round wakes one session at a time, so that a request's step
    waits for one session's read (~2 ms) rather than ten. That is not the rule when no request
    is in flight, because it costs CPU: at 50 cameras, one session a pass cost 1.10x and 1.16x
    the CPU (paired, both orders).
    """

    def __init__(self, period: float, phases: int = 10, per_phase: int = 1,
                 requests: Requests | None = None, defer_s: float = 0.0,
                 per_pass: int | None = None) -> None:
        self.period, self.phases, self.per_phase = period, phases, max(1, per_phase)
        self.per_pass = max(1, per_pass) if per_pass is not None else None  # None: all at once
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
            await self._waiting[phase].park()  # the phase's sleeper wakes us (`_wake_round`)
            return
        self._sleeping[phase] = True
        due = False
        try:
            offset = self.period * phase / self.phases
            now = trio.current_time() - offset
            await trio.sleep_until((now // self.period + 1) * self.period + offset)
            if self.requests.busy():  # requests being answered go first: the round waits a little
                with trio.move_on_after(self.defer_s):
                    await self.requests.wait_idle()
            due = True
        finally:
            self._sleeping[phase] = False
            # This round is who waits now; whoever comes back meanwhile waits for the next one.
            self._waiting[phase].repark_all(self._turns[phase])
            if not due:  # we leave before the round: it wakes now
                self._turns[phase].unpark_all()
        await self._wake_round(self._turns[phase])

    async def _wake_round(self, turns: trio.lowlevel.ParkingLot) -> None:
        """Wake this round's sessions `per_pass` at a time (one at a time while requests are in
        flight), each lot two scheduler passes after the last: one for its reads, one for the
        jobs they hand packets to. Then go to our own read. If we are cancelled meanwhile, the
        rest of the round wakes at once."""
        try:
            while turns:
                turns.unpark(count=1 if self.requests.busy() else self.per_pass or len(turns))
                if turns:
                    await trio.lowlevel.checkpoint()  # the lot reads in the next pass
                    await trio.lowlevel.checkpoint()  # and its jobs mux in the one after
        finally:
            turns.unpark_all()


def _spread(n: int) -> list[int]:
    """0..n-1 in bit-reversed order: each prefix is spread about evenly over the range."""
    bits = max(1, (n - 1).bit_length())
    reversed_ = (int(f"{i:0{bits}b}"[::-1], 2) for i in range(1 << bits))
    return [i for i in reversed_ if i < n]
