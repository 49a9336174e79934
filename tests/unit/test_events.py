"""Job event log: exact texts, replay for late subscribers, lagging subscribers kept."""

from __future__ import annotations

from actors import events


def test_texts_are_the_original_apis():
    assert events.started("J").text == "Collection started with Job ID: J"
    assert events.progress("J", 2, 5).text == "Progress: Step 2/5"
    assert events.completed("J").text == "Collection completed for Job ID: J"
    assert events.error("J", "boom").text == "Error with Job ID J: boom"
    assert events.not_found("J").text == "Error with Job ID J: job not found"
    assert events.interrupted("J", "shutdown").text == "Error with Job ID J: shutdown"


async def test_late_subscriber_replays_then_goes_live():
    log = events.EventLog()
    log.publish(events.started("J"))
    log.publish(events.progress("J", 1, 2))
    receive = log.subscribe()
    log.publish(events.progress("J", 2, 2))
    log.publish(events.completed("J"))
    log.close()
    got = [e.text async for e in receive]
    assert got == [
        "Collection started with Job ID: J", "Progress: Step 1/2", "Progress: Step 2/2",
        "Collection completed for Job ID: J",
    ]
    after = [e.text async for e in log.subscribe()]  # after close: the whole history, then the end
    assert after == got


async def test_a_lagging_subscriber_gets_everything_and_never_blocks_publish():
    """A file read at hundreds of times real time publishes a step every few milliseconds: a
    subscriber that has read nothing of 10,000 events still gets all of them, in order, and one
    that went away is forgotten."""
    log = events.EventLog()
    lagging, gone = log.subscribe(), log.subscribe()
    gone.close()
    for k in range(1, 10_001):
        log.publish(events.progress("J", k, 10_000))
    assert log.subscribers == 1
    log.close()
    assert [e.data["step"] async for e in lagging] == list(range(1, 10_001))