"""HTTP requests the service is answering right now, for the RTSP read rounds (rtsp/ticker.py).

While a request is in flight, a read round that comes due waits for it (a little), and then
wakes its sessions one at a time, so that each step of the request waits for one session's
read rather than a whole round's. Counted in an ASGI wrapper around the app, from the moment
hypercorn hands the request over until the app has answered, and as busy for its first
`HOLD_LIMIT_S` only. WebSocket connections, which stay open, are not counted; neither are
their bursts of events (tried: gain and CPU cost within the noise, BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import trio


class InFlight:
    # How long one request holds the read rounds back at most: a long download (or a client
    # that stopped reading it) must not keep every round at one session a pass for good.
    HOLD_LIMIT_S = 1.0

    def __init__(self) -> None:
        self._until: list[float] = []  # for each answer in flight, when it stops counting as busy
        self._idle = trio.Event()  # set while nothing is in flight
        self._idle.set()

    @property
    def count(self) -> int:
        return len(self._until)

    def busy(self) -> bool:
        """Something is in flight, and has been for less than `HOLD_LIMIT_S`."""
        if not self._until:
            return False
        now = trio.current_time()
        return any(until > now for until in self._until)

    async def wait_idle(self) -> None:
        """Until nothing is in flight (callers bound the wait)."""
        await self._idle.wait()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """In flight while inside (busy for at most `HOLD_LIMIT_S` of it)."""
        if not self._until:
            self._idle = trio.Event()
        until = trio.current_time() + self.HOLD_LIMIT_S
        self._until.append(until)
        try:
            yield
        finally:
            self._until.remove(until)
            if not self._until:
                self._idle.set()

    def wrap(self, app: Any) -> Any:
        """An ASGI app that counts the HTTP requests `app` is answering."""

        async def counted(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await app(scope, receive, send)
            with self.held():
                await app(scope, receive, send)

        return counted
