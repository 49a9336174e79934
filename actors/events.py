"""A job's events: the history every late subscriber replays, and live fan-out to subscribers.

The texts are the original API's, byte for byte. Events without a text (`interrupted`, per-segment
details) reach only JSON subscribers (`?format=json`).

All methods are synchronous and run in the trio thread, so `subscribe` takes the history snapshot
and registers the live channel in one atomic step: nothing is lost or repeated between the two.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

TERMINAL = frozenset({"completed", "error", "interrupted"})


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEvent:
    type: str  # started | progress | completed | error | interrupted | segment | retry
    job_id: str
    text: str | None  # the original API's text frame, None for JSON-only events
    data: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "job_id": self.job_id, "at": self.at}
        if self.text is not None:
            out["message"] = self.text
        out.update(self.data)
        return out


def started(job_id: str) -> JobEvent:
    return JobEvent(type="started", job_id=job_id, text=f"Collection started with Job ID: {job_id}")


def progress(job_id: str, step: int, total: int, **data: Any) -> JobEvent:
    return JobEvent(
        type="progress", job_id=job_id, text=f"Progress: Step {step}/{total}",
        data={"step": step, "total": total, **data},
    )


def completed(job_id: str) -> JobEvent:
    return JobEvent(
        type="completed", job_id=job_id, text=f"Collection completed for Job ID: {job_id}"
    )


def error(job_id: str, message: str) -> JobEvent:
    return JobEvent(
        type="error", job_id=job_id, text=f"Error with Job ID {job_id}: {message}",
        data={"error": message},
    )


def interrupted(job_id: str, reason: str) -> JobEvent:
    """The job was cut short by a shutdown or a crash. Its text is the original API's error text,
    so that a replay ends with `Error with Job ID ...` as the contract's sequences end. (A live
    subscriber of a draining server is closed with 1001 before the job has stopped.)"""
    return JobEvent(
        type="interrupted", job_id=job_id, text=f"Error with Job ID {job_id}: {reason}",
        data={"reason": reason},
    )


def from_row(job_id: str, row: dict[str, Any]) -> JobEvent:
    """An event read back from the job history."""
    return JobEvent(
        type=row["type"], job_id=job_id, text=row["text"], data=row["data"], at=row["at"]
    )


def replay(job_id: str, rows: list[dict[str, Any]]) -> trio.MemoryReceiveChannel[JobEvent]:
    """A closed channel holding a finished job's stored events, for a subscriber after a restart."""
    send, receive = trio.open_memory_channel[JobEvent](len(rows) + 1)
    with send:
        for row in rows:
            send.send_nowait(from_row(job_id, row))
    return receive


def retry(job_id: str, source: str, reason: str, attempt: int, message: str) -> JobEvent:
    """A source's session failed and will be retried (or given up): JSON subscribers and history."""
    return JobEvent(
        type="retry", job_id=job_id, text=None,
        data={"source": source, "reason": reason, "attempt": attempt, "error": message},
    )


def not_found(job_id: str) -> JobEvent:
    return error(job_id, "job not found")


class EventLog:
    """A job's events, kept whole for late subscribers, and handed to every live subscriber.

    A subscriber is never dropped for lagging: its backlog holds references to events the
    history keeps anyway (8 bytes each), so it is bounded by the job's own history. (A bound of
    256 queued events closed prompt clients with 1008 while a file was read at hundreds of
    times real time: a step every few milliseconds.) A client that stops reading is dropped by
    the send timeout instead (collector/http_send.py).
    """

    def __init__(self, on_publish: Callable[[int, JobEvent], None] | None = None) -> None:
        self.on_publish = on_publish  # (sequence number, event): the job persists it
        self.history: list[JobEvent] = []
        self._subscribers: set[trio.MemorySendChannel[JobEvent]] = set()
        self.closed = False

    @property
    def subscribers(self) -> int:
        """Live subscribers; ones whose receiver went away are forgotten here, not at next
        publish."""
        gone = {c for c in self._subscribers if c.statistics().open_receive_channels == 0}
        for channel in gone:
            channel.close()
        self._subscribers -= gone
        return len(self._subscribers)

    def publish(self, event: JobEvent) -> None:
        assert not self.closed, "publish after close"
        self.history.append(event)
        if self.on_publish is not None:
            self.on_publish(len(self.history), event)
        for channel in list(self._subscribers):
            try:
                channel.send_nowait(event)  # unbounded: never blocks
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.discard(channel)

    def close(self) -> None:
        """No more events: every subscriber's channel ends after what it has buffered."""
        self.closed = True
        for channel in self._subscribers:
            channel.close()
        self._subscribers.clear()

    def subscribe(self) -> trio.MemoryReceiveChannel[JobEvent]:
        send, receive = trio.open_memory_channel[JobEvent](math.inf)
        for event in self.history:
            send.send_nowait(event)
        if self.closed:
            send.close()
        else:
            self._subscribers.add(send)
        return receive
