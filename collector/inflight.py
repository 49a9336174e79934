"""What the service is answering right now, for the RTSP read rounds (rtsp/ticker.py).

While anything is in flight, a read round that comes due waits for it (a little), and then
wakes its sessions one at a time, so that each step of the answer waits for one session's
read rather than a whole round's. Counted: an HTTP request, in an ASGI wrapper around the app,
from the moment hypercorn hands it over until the app has answered; and a WebSocket while it
delivers a burst of events (collector/app.py), not while it waits for them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import trio


class InFlight:
    def __init__(self) -> None:
        self.count = 0
        self._idle = trio.Event()  # set while no request is in flight
        self._idle.set()

    def busy(self) -> bool:
        return self.count > 0

    async def wait_idle(self) -> None:
        """Until no request is in flight."""
        await self._idle.wait()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """In flight while inside."""
        if not self.count:
            self._idle = trio.Event()
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1
            if not self.count:
                self._idle.set()

    def wrap(self, app: Any) -> Any:
        """An ASGI app that counts the HTTP requests `app` is answering."""

        async def counted(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await app(scope, receive, send)
            with self.held():
                await app(scope, receive, send)

        return counted
