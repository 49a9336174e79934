"""Channel helpers beside the messages (actors/messages.py)."""

from __future__ import annotations

import trio
import trio.testing

from actors.messages import queued


async def test_queued_takes_what_waits_without_a_checkpoint_each():
    """What the WebSocket handler, the announcer and the database writer take behind the message
    they woke for."""
    send, receive = trio.open_memory_channel[int](10)
    for i in range(4):
        send.send_nowait(i)
    with trio.fail_after(5):
        assert await receive.receive() == 0
        assert queued(receive, most=2) == [1, 2]
        assert queued(receive) == [3]  # synchronous: no checkpoint between them
        assert queued(receive) == []
        send.send_nowait(4)
        send.close()
        assert queued(receive) == [4]  # what was sent before the close, then nothing
        assert queued(receive) == []
    receive.close()
    assert queued(receive) == []



async def test_answer_to_a_caller_that_went_away_is_dropped():
    """`answer` delivers and closes the reply; when the caller's end is already closed (it was
    cancelled while it waited) it says so instead of raising into the actor."""
    import outcome
    import pytest

    from actors.messages import answer

    reply, waiting = trio.open_memory_channel[outcome.Outcome[int]](1)
    assert answer(reply, outcome.Value(1)) is True
    with trio.fail_after(5):
        assert (await waiting.receive()).unwrap() == 1
        with pytest.raises(trio.EndOfChannel):  # the actor's end is closed
            await waiting.receive()

    reply, gone = trio.open_memory_channel[outcome.Outcome[int]](1)
    gone.close()
    assert answer(reply, outcome.Value(2)) is False
    with pytest.raises(trio.ClosedResourceError):  # closed all the same
        reply.send_nowait(outcome.Value(3))


async def test_ask_sends_at_once_and_a_cancelled_caller_sends_nothing():
    """`ask` puts its request in the inbox in the caller's own step when there is room, waits
    for room when there is none, and sends nothing once its caller is cancelled."""
    import outcome

    from actors.messages import answer, ask

    inbox, requests = trio.open_memory_channel[object](1)
    with trio.fail_after(5):
        with trio.CancelScope() as scope:
            scope.cancel()
            await ask(inbox, lambda reply: ("first", reply))
        assert scope.cancelled_caught
        assert queued(requests) == []  # nothing was sent

        async def actor(task_status=trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            async for name, reply in requests:
                answer(reply, outcome.Value(name.upper()))

        inbox.send_nowait(("queued", trio.open_memory_channel[object](1)[0]))  # the inbox is full
        async with trio.open_nursery() as nursery:
            got: list[str] = []

            async def asker() -> None:
                got.append(await ask(inbox, lambda reply: ("second", reply)))

            nursery.start_soon(asker)
            await trio.testing.wait_all_tasks_blocked()
            assert got == []  # waiting for room
            await nursery.start(actor)
            await trio.testing.wait_all_tasks_blocked()
            assert got == ["SECOND"]
            nursery.cancel_scope.cancel()


async def test_tell_even_if_cancelled_waits_for_room_shielded():
    """A full inbox and a cancelled sender (a job's `finally`): the message still goes once the
    receiver makes room, instead of being lost."""
    from actors.messages import tell_even_if_cancelled

    send, receive = trio.open_memory_channel[str](1)
    send.send_nowait("filler")
    results: list[bool] = []
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def sender() -> None:
                with trio.CancelScope() as scope:
                    scope.cancel()  # already cancelled, as a job being stopped
                    results.append(await tell_even_if_cancelled(send, "unsubscribe",
                                                                patience_s=60))

            nursery.start_soon(sender)
            await trio.testing.wait_all_tasks_blocked()
            assert results == []  # waiting for room, not given up
            assert await receive.receive() == "filler"
            assert await receive.receive() == "unsubscribe"
    assert results == [True]


async def test_tell_even_if_cancelled_sends_at_once_when_there_is_room():
    from actors.messages import tell_even_if_cancelled

    send, receive = trio.open_memory_channel[str](1)
    with trio.CancelScope() as scope:
        scope.cancel()
        assert await tell_even_if_cancelled(send, "m", patience_s=1) is True
    assert receive.receive_nowait() == "m"
    receive.close()
    assert await tell_even_if_cancelled(send, "n", patience_s=1) is False  # nobody to read


async def test_tell_even_if_cancelled_gives_up_after_its_patience(autojump_clock):
    """Nobody makes room: False after `patience_s`, not a wait for good."""
    import pytest

    from actors.messages import tell_even_if_cancelled

    send, receive = trio.open_memory_channel[str](1)
    send.send_nowait("filler")
    started = trio.current_time()
    assert await tell_even_if_cancelled(send, "lost", patience_s=5) is False
    assert trio.current_time() - started == 5
    assert receive.receive_nowait() == "filler"
    with pytest.raises(trio.WouldBlock):
        receive.receive_nowait()
