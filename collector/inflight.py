"""What someone is waiting for right now, for the RTSP read rounds (rtsp/ticker.py).

While anything is in flight, a read phase that comes due waits for it (a little), and then
wakes its sessions one at a time, so that each step of what is awaited waits for one session's
read rather than a round's. Two kinds are counted: the HTTP requests being answered, in an ASGI
wrapper around the app, from the moment hypercorn hands a request over until the app has
answered (WebSocket connections, which stay open, are not counted); and closed segments a job
has not announced yet (actors/job.py: from the cut, through the fsync, to the progress event),
so that the event's few steps are not queued behind the rest of a read round.
"""

from __future__ import annotations

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

    def hold(self) -> None:
        """One more thing in flight; pair with `release`."""
        if not self.count:
            self._idle = trio.Event()
        self.count += 1

    def release(self) -> None:
        self.count -= 1
        if not self.count:
            self._idle.set()

    def wrap(self, app: Any) -> Any:
        """An ASGI app that counts the HTTP requests `app` is answering."""

        async def counted(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return await app(scope, receive, send)
            self.hold()
            try:
                await app(scope, receive, send)
            finally:
                self.release()

        return counted
