"""Channel helpers beside the messages (actors/messages.py)."""

from __future__ import annotations

import trio


async def test_queued_takes_what_waits_without_a_checkpoint_each():
    """What the WebSocket handler, the announcer and the database writer take behind the message
    they woke for."""
    from actors.messages import queued

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
