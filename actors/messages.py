"""Every message the actors exchange: frozen dataclasses, one closed union per inbox.

Request/reply: a request carries `reply`, the send end of a size-1 channel; the actor answers with
`answer(reply, outcome.Value(...))` or `outcome.Error(...)`, which never blocks and closes the
channel, so an actor that crashes closes it too. A caller that went away (a client that
disconnected while its request waited) is no error of the actor's: what it asked for is done all
the same, and only the answer is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import outcome
import trio

from actors.backoff import RetryPolicy
from actors.loan import RecorderLoan
from collector.errors import SourceError
from collector.media.packets import MediaPacket, SessionInfo

Reply = trio.MemorySendChannel[outcome.Outcome[Any]]
T = TypeVar("T")


async def ask(inbox: trio.MemorySendChannel[Any], make: Callable[[Reply], Any]) -> Any:
    """Send the request `make(reply)` to an actor and wait for its answer (or its error).

    The request goes into the inbox without a scheduler pass of its own when there is room
    (`send` would hand it over and then yield once more): while 100 cameras record, a pass lasts
    up to 10-20 ms, and a request to the service waits for one per step (BENCHMARKS.md)."""
    reply, waiting = trio.open_memory_channel[outcome.Outcome[Any]](1)
    with waiting:
        await trio.lowlevel.checkpoint_if_cancelled()  # a cancelled caller sends nothing
        request = make(reply)
        try:
            inbox.send_nowait(request)
        except trio.WouldBlock:  # a full inbox: wait for room, as before
            await inbox.send(request)
        try:
            result = await waiting.receive()
        except trio.EndOfChannel:
            raise RuntimeError("the actor ended without answering") from None
    return result.unwrap()


async def tell_even_if_cancelled(inbox: trio.MemorySendChannel[T], message: T,
                                 *, patience_s: float) -> bool:
    """Send `message`, which must not be lost (a `finally` that releases something the receiver
    holds for us), from a task that may be cancelled: at once when the inbox has room, else
    waiting for room, shielded, for at most `patience_s`. False when it could not be sent (the
    inbox stayed full, or its receiver is gone)."""
    try:
        inbox.send_nowait(message)
        return True
    except trio.WouldBlock:
        pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    with trio.CancelScope(shield=True, deadline=trio.current_time() + patience_s):
        try:
            await inbox.send(message)
            return True
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    return False


def answer(reply: Reply, result: outcome.Outcome[Any]) -> bool:
    """Answer an `ask` and close `reply`; False when the caller had gone (its end is closed)."""
    with reply:
        try:
            reply.send_nowait(result)
        except trio.BrokenResourceError:
            return False
    return True


def queued(receive: trio.MemoryReceiveChannel[T], most: int | None = None) -> list[T]:
    """What `receive` holds now (`most` of it at most), taken without a checkpoint: an actor that
    woke for one message handles those queued behind it in the same step, not a pass each."""
    items: list[T] = []
    while most is None or len(items) < most:
        try:
            items.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            break
    return items


# --- requests to the supervisor (from the HTTP/WebSocket layer and from job actors) --------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StartJob:
    request: Any  # collector.params.CollectRequest
    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class GetJob:
    job_id: str
    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class ListJobs:
    status: str | None
    since: float | None  # created at or after (Unix seconds)
    until: float | None  # created before
    limit: int
    before: str | None  # cursor: a job id; list jobs created before it
    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class GetEvents:
    job_id: str
    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeJob:
    """Delete a finished job: its segment files and its rows, together."""

    job_id: str
    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class ListCameras:
    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class PutCamera:
    name: str
    url: str
    options: dict[str, str]
    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteCamera:
    name: str
    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelJob:
    job_id: str
    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeJob:
    """Ask for a job's events: every past event first, then live ones, on one channel."""

    job_id: str
    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscribeCamera:
    """From a job actor: feed `channel` with the camera's events for `url`."""

    subscriber: int
    url: str
    options: tuple[tuple[str, str], ...]
    channel: trio.MemorySendChannel[CameraEvent]
    retry: RetryPolicy  # used for the camera's backoff if this subscription starts the camera
    loan: RecorderLoan | None = None  # the job's recorder, to mux paced batches in (actors/loan.py)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnsubscribeCamera:
    subscriber: int
    url: str
    options: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class GetStatistics:
    reply: Reply


@dataclass(frozen=True, slots=True, kw_only=True)
class Drain:
    """Shutdown: stop every job (segments closed cleanly, status `interrupted`), then reply."""

    reason: str
    reply: Reply


SupervisorMessage = (
    StartJob
    | GetJob
    | GetEvents
    | PurgeJob
    | ListCameras
    | PutCamera
    | DeleteCamera
    | ListJobs
    | CancelJob
    | SubscribeJob
    | SubscribeCamera
    | UnsubscribeCamera
    | GetStatistics
    | Drain
)


# --- camera actor inbox ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AddSubscriber:
    subscriber: int
    channel: trio.MemorySendChannel[CameraEvent]
    loan: RecorderLoan | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveSubscriber:
    subscriber: int


CameraMessage = AddSubscriber | RemoveSubscriber


# --- what a camera sends its subscribers -----------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Packets:
    session: int
    batch: tuple[MediaPacket, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """The camera's reading thread muxed batches of `session` with the subscriber's lent recorder:
    what that returned waits in the loan (`RecorderLoan.results`)."""

    session: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceDown:
    """The session failed or ended; the camera retries on its own schedule."""

    error: SourceError
    failures: int  # consecutive failed attempts so far


CameraEvent = SessionInfo | Packets | Recorded | SourceDown
