"""A server's REDIRECT request while we play (RFC 2326 10.15): answered, followed under the same
policy as a 3xx to DESCRIBE (`redirects.py`), and, for the camera, a new session but no failure.
Scripted servers on 127.0.0.1 and 127.0.0.2 (another host)."""

from __future__ import annotations

import logging

import pytest
import trio

from actors.backoff import RetryPolicy
from actors.camera import Camera
from actors.messages import AddSubscriber, Packets, SourceDown
from collector.errors import SourceEnded, SourceError, SourceUnavailable
from collector.media.packets import MediaPacket, SessionInfo, StreamInfo
from collector.rtsp.opener import RtspOpener
from collector.rtsp.redirects import MAX_REDIRECTS
from collector.rtsp.wire import encode_request
from tests.rtsp.fake_camera import FakeCamera, LockedStream, video_frames
from tests.rtsp.test_protocol import CEILING, Sink, send

SECRETS = ("s3cret", "hunter2", "evil")


class SessionSink:
    """Each `opened` starts a new list of packets; `wait_packets(n)` until n in all."""

    def __init__(self) -> None:
        self.sessions: list[list[MediaPacket]] = []
        self._changed = trio.Event()

    def opened(self, streams: tuple[StreamInfo, ...], reconfigured: bool = False) -> None:
        self.sessions.append([])

    def packets(self, batch) -> None:  # type: ignore[no-untyped-def]
        self.sessions[-1].extend(batch)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_packets(self, count: int) -> None:
        while sum(len(s) for s in self.sessions) < count:
            await self._changed.wait()


def fills(packets: list[MediaPacket]) -> list[int]:
    """Each frame's fill byte (`video_frames(fill=)`): which server sent it, in what order."""
    return [bytes(p.data)[-1] for p in packets]


def redirect(location: str | None, cseq: int = 9, **headers: str) -> bytes:
    if location is not None:
        headers["Location"] = location
    return encode_request("REDIRECT", "rtsp://127.0.0.1/live", {"CSeq": str(cseq), **headers})


def redirecting(camera: FakeCamera, locations: dict[str, str], frames: int = 2):  # type: ignore[no-untyped-def]
    """`after_play`: a few frames, then REDIRECT to `locations[path played]`; then silence."""
    async def after_play(stream: LockedStream) -> None:
        location = locations[camera.playing.rstrip("/")]
        await stream.send_all(b"".join(video_frames(frames)) + redirect(location))
        await trio.sleep_forever()

    return after_play


async def test_redirect_during_play_continues_from_the_location():
    """The server sends 5 frames and then REDIRECT (with its session) to a server on another
    host: we answer 200 with its CSeq and Session, tear our session down, and play the new one;
    all 5 frames before the REDIRECT (the last one no longer held back for its duration) and the
    new server's arrive, each server's under a session of its own, and `run()` raises nothing
    (it is still playing when cancelled)."""
    first, second = FakeCamera(), FakeCamera(host="127.0.0.2")
    second.after_play = send(video_frames(7, fill=100))
    opener, sink = RtspOpener(io_timeout_s=2.0, stall_timeout_s=2.0), SessionSink()
    raised: list[SourceError] = []

    async def play() -> None:
        try:
            await opener.run(first.url, {}, sink)
        except SourceError as exc:
            raised.append(exc)

    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(first.serve)
            await nursery.start(second.serve)
            first.after_play = send([*video_frames(5),
                                     redirect(second.url, cseq=731, Session="F00D")])
            nursery.start_soon(play)
            await sink.wait_packets(11)  # the 7th waits for its duration: no 8th comes
            nursery.cancel_scope.cancel()
    assert raised == []
    assert [fills(s) for s in sink.sessions] == [[0, 1, 2, 3, 4],
                                                 [100, 101, 102, 103, 104, 105]]
    assert [[p.keyframe for p in s] for s in sink.sessions] == [
        [True, False, False, False, False], [True, False, False, False, False, True]]
    (answer,) = first.client_answers()
    assert answer == (200, {"cseq": "731", "session": "F00D"})
    assert first.methods() == ["OPTIONS", "DESCRIBE", "SETUP", "PLAY", "RTSP/1.0", "TEARDOWN"]
    assert second.methods()[:4] == ["OPTIONS", "DESCRIBE", "SETUP", "PLAY"]
    stats = opener.statistics()
    assert (stats.sessions, stats.redirects) == (2, 1)


async def test_camera_takes_a_redirect_as_a_new_session_not_a_failure():
    """Through the camera actor: the subscriber hears the first session, its packets, the second
    session and its packets, and no SourceDown; the camera counts two sessions and no failure
    (no backoff: the second connection is made at once)."""
    first, second = FakeCamera(), FakeCamera(host="127.0.0.2")
    second.after_play = send(video_frames(5, fill=50))
    opener = RtspOpener(io_timeout_s=2.0, stall_timeout_s=2.0)
    send_events, events = trio.open_memory_channel[object](1000)
    got: list[object] = []
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(first.serve)
            await nursery.start(second.serve)
            first.after_play = send([*video_frames(5), redirect(second.url)])
            camera = Camera(first.url, {}, opener, RetryPolicy(initial_backoff=5.0))
            nursery.start_soon(camera.run)
            camera.inbox.send_nowait(AddSubscriber(subscriber=1, channel=send_events))
            async for event in events:
                got.append(event)
                if sum(len(e.batch) for e in got if isinstance(e, Packets)) == 9:
                    break
            camera.inbox.close()
            nursery.cancel_scope.cancel()
    assert not any(isinstance(e, SourceDown) for e in got)
    sessions = [e.session for e in got if isinstance(e, SessionInfo)]
    assert sessions == [1, 2]
    per_session = {n: [b for e in got if isinstance(e, Packets) and e.session == n
                       for b in fills(list(e.batch))] for n in sessions}
    assert per_session == {1: [0, 1, 2, 3, 4], 2: [50, 51, 52, 53]}  # the 5th waits
    stats = camera.statistics()
    assert (stats.sessions, stats.failures) == (2, 0)


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 400),  # Location is mandatory
    ({"Location": "   "}, 400),
    ({"Session": "OTHER", "Location": "rtsp://127.0.0.1:1/x"}, 454),  # not our session
])
async def test_unusable_redirect_is_refused_and_play_goes_on(headers: dict[str, str],
                                                            status: int):
    """A REDIRECT without a Location, or naming another session, is answered with a 4xx (its
    CSeq echoed) and changes nothing: the frames before and after it arrive in one session, on
    one connection, until the server closes."""
    frames = video_frames(6)
    request = encode_request("REDIRECT", "rtsp://127.0.0.1/live", {"CSeq": "5", **headers})

    async def after_play(stream: LockedStream) -> None:
        asked = len(camera.requests)
        await stream.send_all(b"".join([*frames[:3], request, *frames[3:]]))
        await camera.wait_requests(asked + 1)  # our answer
        await stream.aclose()

    camera = FakeCamera(after_play=after_play)
    opener, sink = RtspOpener(io_timeout_s=2.0, stall_timeout_s=2.0), SessionSink()
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(camera.serve)
            with pytest.raises(SourceEnded):
                await opener.run(camera.url, {}, sink)
            nursery.cancel_scope.cancel()
    assert [fills(s) for s in sink.sessions] == [[0, 1, 2, 3, 4, 5]]
    assert [(s, h["cseq"]) for s, h in camera.client_answers()] == [(status, "5")]
    assert camera.methods().count("OPTIONS") == 1
    stats = opener.statistics()
    assert (stats.sessions, stats.redirects) == (1, 0)


@pytest.mark.parametrize(("chain", "text"), [
    ({"/live": "/live"}, "redirect loop: "),  # to itself
    ({"/live": "/a", "/a": "/live"}, "redirect loop: "),
    ({f"/{n}": f"/{n + 1}" for n in range(10)}, f"more than {MAX_REDIRECTS} redirects: "),
])
async def test_redirect_loops_end_as_describe_redirect_loops_do(chain: dict[str, str],
                                                                text: str):
    """REDIRECTs while playing count against the same limits as 3xx answers to DESCRIBE: a
    server that sends us back to itself, a loop, or a chain longer than MAX_REDIRECTS ends the
    run with reason `redirect` and the very same message (the chain, password redacted) as
    DESCRIBE redirected along the same paths; every REDIRECT was answered 200."""
    camera = FakeCamera()
    start = next(iter(chain))
    errors = []
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(camera.serve)
            url = f"rtsp://u:s3cret@127.0.0.1:{camera.port}{start}"
            camera.moved = {("DESCRIBE", path): (302, to) for path, to in chain.items()}
            with pytest.raises(SourceUnavailable) as describe:
                await RtspOpener(io_timeout_s=2.0).run(url, {}, Sink())
            camera.moved = {}
            camera.after_play = redirecting(camera, chain)
            for _ in range(2):  # the same again: nothing is remembered between runs
                with pytest.raises(SourceUnavailable) as play:
                    await RtspOpener(io_timeout_s=2.0, stall_timeout_s=2.0).run(url, {}, Sink())
                errors.append(play.value)
            nursery.cancel_scope.cancel()
    assert [e.reason for e in errors] == ["redirect", "redirect"]
    assert str(errors[0]) == str(errors[1]) == str(describe.value)
    assert str(errors[0]).startswith(f"{text}rtsp://***@127.0.0.1:{camera.port}{start} -> ")
    assert "s3cret" not in str(errors[0])
    hops = min(len(chain), MAX_REDIRECTS + 1)
    assert [s for s, _ in camera.client_answers()] == [200] * hops * 2


async def test_credentials_never_shown_and_kept_only_on_the_same_host(
        caplog: pytest.LogCaptureFixture):
    """Our URL's password follows a REDIRECT to another path on the same host and port (its
    Digest challenge is answered there), not one to another host, and userinfo the server put
    in Location is never used; neither the password nor that userinfo appears in the error or in
    any log line (as logged, before the sink redacts again): `rtsp://***@host/...`."""
    caplog.set_level(logging.INFO, logger="collector")
    first = FakeCamera(digest=("admin", "s3cret"))
    other = FakeCamera(host="127.0.0.2", digest=("admin", "s3cret"))
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(first.serve)
            await nursery.start(other.serve)
            elsewhere = f"rtsp://evil:hunter2@127.0.0.2:{other.port}/x"
            first.after_play = redirecting(first, {"/live": "/moved", "/moved": elsewhere})
            with pytest.raises(SourceUnavailable) as info:
                url = f"rtsp://admin:s3cret@127.0.0.1:{first.port}/live"
                await RtspOpener(io_timeout_s=2.0, stall_timeout_s=2.0).run(url, {}, Sink())
            nursery.cancel_scope.cancel()
    assert info.value.reason == "unauthorized"  # 127.0.0.2 asked; we had nothing to give it
    assert f"rtsp://127.0.0.2:{other.port}/x" in str(info.value)
    moved = [h for (_, m, h), path in zip(first.requests, first.targets, strict=True)
             if path == "/moved" and m == "DESCRIBE"]
    assert ["authorization" in h for h in moved] == [False, True]  # challenged, then answered
    assert other.answers == [("OPTIONS", 200), ("DESCRIBE", 401)]
    assert not any("authorization" in h for _, _, h in other.requests)
    lines = [r.getMessage() for r in caplog.records]
    assert any(f"location=rtsp://***@127.0.0.2:{other.port}/x" in line for line in lines)
    assert any(line.startswith("rtsp.redirect url=rtsp://***@127.0.0.1:") for line in lines)
    for shown in (str(info.value), *lines):
        assert not any(secret in shown for secret in SECRETS), shown


@pytest.mark.parametrize("reset_s", [0.3, 60.0])
async def test_a_session_that_played_long_enough_starts_a_new_chain(reset_s: float):
    """Two servers that move us to each other after each session (a fail-over and back): when
    each session played at least `chain_reset_s` (0.3 s here) before its REDIRECT, the chain
    starts afresh every time, so we follow 6 hops back and forth (more than MAX_REDIRECTS, and
    each a return to a URL already visited) without an error; with the default (60 s) the second
    hop is a loop and ends the run with reason `redirect`, as before."""
    a, b = FakeCamera(), FakeCamera(host="127.0.0.2")
    sessions, hops = 0, 6

    def moving(other: FakeCamera):  # type: ignore[no-untyped-def]
        async def after_play(stream: LockedStream) -> None:
            nonlocal sessions
            sessions += 1
            first = video_frames(5, fill=10 * sessions)
            last = b"".join(video_frames(1, seq=len(first), ts=3600 * 5, fill=10 * sessions + 5))
            await stream.send_all(b"".join(first))
            await trio.sleep(0.5)
            await stream.send_all(last + redirect(other.url) if sessions <= hops else last)
            await trio.sleep_forever()
        return after_play

    a.after_play, b.after_play = moving(b), moving(a)
    opener, sink = RtspOpener(io_timeout_s=2.0, stall_timeout_s=5.0, chain_reset_s=reset_s), \
        SessionSink()
    raised: list[SourceError] = []

    async def play(done: trio.CancelScope) -> None:
        try:
            await opener.run(a.url, {}, sink)
        except SourceError as exc:
            raised.append(exc)
            done.cancel()

    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(a.serve)
            await nursery.start(b.serve)
            nursery.start_soon(play, nursery.cancel_scope)
            await sink.wait_packets(6 * hops + 5)  # the last session's 6th frame is held
            nursery.cancel_scope.cancel()
    if reset_s < 1:
        assert raised == []
        assert [fills(s) for s in sink.sessions][:hops] == [
            [10 * n + k for k in range(6)] for n in range(1, hops + 1)]
        assert (opener.statistics().sessions, opener.statistics().redirects) == (hops + 1, hops)
    else:
        (error,) = raised
        assert error.reason == "redirect"
        assert str(error).startswith(f"redirect loop: {a.url} -> {b.url} -> ")
