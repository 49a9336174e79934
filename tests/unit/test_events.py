"""Job event log: exact texts, replay for late subscribers, slow subscribers dropped."""

from __future__ import annotations

from actors import events


def test_texts_are_the_original_apis():
    assert events.started("J").text == "Collection started with Job ID: J"
    assert events.progress("J", 2, 5).text == "Progress: Step 2/5"
    assert events.completed("J").text == "Collection completed for Job ID: J"
    assert events.error("J", "boom").text == "Error with Job ID J: boom"
    assert events.not_found("J").text == "Error with Job ID J: job not found"
    assert events.interrupted("J", "shutdown").text is None


async def test_late_subscriber_replays_then_goes_live():
    log = events.EventLog(buffer=4)
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


async def test_slow_subscriber_is_dropped_without_blocking():
    log = events.EventLog(buffer=2)
    slow = log.subscribe()
    fast = log.subscribe()
    for k in range(1, 4):
        log.publish(events.progress("J", k, 9))
        if k < 3:
            assert (await fast.receive()).data["step"] == k
    assert log.dropped == 1 and log.subscribers == 1
    assert [e.data["step"] async for e in slow] == [1, 2]  # what it had, then the end
    assert (await fast.receive()).data["step"] == 3
