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

