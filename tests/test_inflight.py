"""The count of HTTP requests in flight (collector/inflight.py), at the ASGI interface: up while
a request is being answered, back to zero after it, WebSockets not counted; busy for a request's
first second only."""

from __future__ import annotations

import trio
import trio.testing

from collector.inflight import InFlight


async def test_counts_http_requests_being_answered_not_websockets():
    in_flight = InFlight()
    seen: list[tuple[str, int]] = []
    release = trio.Event()

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        seen.append((scope["type"], in_flight.count))
        if scope["type"] == "http":
            await release.wait()
            raise RuntimeError("the app failed")  # still counted down

    counted = in_flight.wrap(app)
    with trio.fail_after(5):
        idle: list[int] = []
        async with trio.open_nursery() as nursery:
            async def answer() -> None:
                try:
                    await counted({"type": "http"}, None, None)
                except RuntimeError:
                    pass

            async def wait_idle() -> None:
                await in_flight.wait_idle()
                idle.append(in_flight.count)

            await in_flight.wait_idle()  # nothing in flight yet
            nursery.start_soon(answer)
            await trio.testing.wait_all_tasks_blocked()
            assert in_flight.busy() and in_flight.count == 1
            nursery.start_soon(wait_idle)
            await counted({"type": "websocket"}, None, None)
            await trio.testing.wait_all_tasks_blocked()
            assert idle == []
            release.set()
    assert idle == [0]
    assert seen == [("http", 1), ("websocket", 1)]
    assert not in_flight.busy() and in_flight.count == 0


async def test_held_counts_while_inside_and_wakes_waiters_after():
    in_flight = InFlight()
    woke: list[int] = []
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            with in_flight.held():
                with in_flight.held():
                    assert in_flight.count == 2

                    async def wait_idle() -> None:
                        await in_flight.wait_idle()
                        woke.append(in_flight.count)

                    nursery.start_soon(wait_idle)
                await trio.testing.wait_all_tasks_blocked()
                assert in_flight.busy() and woke == []
    assert woke == [0] and not in_flight.busy()


async def test_an_answer_holds_the_rounds_back_for_a_second_at_most(mock_clock):
    in_flight = InFlight()
    with in_flight.held():
        assert in_flight.busy()
        mock_clock.jump(0.9)
        with in_flight.held():
            mock_clock.jump(0.2)
            assert in_flight.busy()  # the first has had its second, the other has not
            mock_clock.jump(0.9)
            assert not in_flight.busy() and in_flight.count == 2
        assert not in_flight.busy() and in_flight.count == 1
    with in_flight.held():
        assert in_flight.busy()  # a new answer counts again
    assert not in_flight.busy() and in_flight.count == 0
