"""Digest authentication when nonces go stale (RFC 7616 3.3): `Authorizer.answer()` alone, then the
client against the scripted server, during set-up and on keep-alives."""

from __future__ import annotations

import pytest
import trio

from collector.errors import SourceEnded, SourceUnavailable
from collector.rtsp.auth import Authorizer, parse_challenge
from collector.rtsp.client import MAX_SENDS
from collector.rtsp.opener import RtspOpener
from tests.rtsp.fake_camera import FakeCamera, LockedStream, video_frames
from tests.rtsp.test_protocol import CEILING, Sink, send

DIGEST = 'Digest realm="r", nonce="n1"'


def test_answer_retries_the_first_challenge_and_stale_nonces_only():
    """The first challenge and a stale or new nonce are worth another send; the challenge we
    already answered, or Basic again, means the credentials were refused."""
    auth = Authorizer("u", "p")
    assert auth.answer((DIGEST,))  # first challenge
    assert not auth.answer((DIGEST,))  # same nonce, not stale: wrong credentials
    assert auth.answer(('Digest realm="r", nonce="n1", stale=TRUE',))
    assert auth.answer(('Digest realm="r", nonce="n2"',))  # rotated without saying stale
    header = auth.header("DESCRIBE", "rtsp://h/x")
    assert header is not None and parse_challenge(header).params["nonce"] == "n2"
    assert not auth.answer(('Newfangled x="y"',))  # nothing we can answer
    basic = Authorizer("u", "p")
    assert basic.answer(('Basic realm="r"',))
    assert not basic.answer(('Basic realm="r"',))


def test_answer_restarts_the_nonce_count():
    """A new nonce starts its own nonce count (nc=00000001), as RFC 7616 3.4 requires."""
    auth = Authorizer("u", "p")
    auth.answer(('Digest realm="r", nonce="n1", qop="auth"',))
    auth.header("OPTIONS", "rtsp://h/x")
    second = auth.header("DESCRIBE", "rtsp://h/x")
    assert second is not None and parse_challenge(second).params["nc"] == "00000002"
    auth.answer(('Digest realm="r", nonce="n2", qop="auth", stale=true',))
    third = auth.header("DESCRIBE", "rtsp://h/x")
    assert third is not None and parse_challenge(third).params["nc"] == "00000001"


def url_for(camera: FakeCamera, password: str = "pw") -> str:
    return f"rtsp://admin:{password}@127.0.0.1:{camera.port}/live"


async def test_stale_nonce_during_setup_is_answered_again():
    """The nonce goes stale between the challenge and our answer (401 stale=true with a new
    nonce): DESCRIBE is sent once more with the new nonce and the session plays."""
    camera = FakeCamera(digest=("admin", "pw"), stale={"DESCRIBE": 1},
                        after_play=send(video_frames(5), then_close=True))
    sink = Sink()
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(camera.serve)
            with pytest.raises(SourceEnded):
                await RtspOpener(io_timeout_s=2.0).run(url_for(camera), {}, sink)
            nursery.cancel_scope.cancel()
    assert camera.answers[:6] == [("OPTIONS", 200), ("DESCRIBE", 401), ("DESCRIBE", 401),
                                  ("DESCRIBE", 200), ("SETUP", 200), ("PLAY", 200)]
    describes = [h for _, m, h in camera.requests if m == "DESCRIBE"]
    nonces = [parse_challenge(h["authorization"]).params["nonce"] for h in describes[1:]]
    assert nonces == ["abc123", "abc123+"]
    assert len(sink.all) == 5


async def test_stale_nonce_on_a_keepalive_is_answered_at_once():
    """A keep-alive refused with a stale nonce goes out again with the new nonce within a read
    or two, still as GET_PARAMETER; it is not dropped until the next keep-alive nor turned into
    OPTIONS (which would leave the server's session timer running out)."""
    async def trickle(stream: LockedStream) -> None:
        for frame in video_frames(1000):
            await stream.send_all(frame)
            await trio.sleep(0.01)

    camera = FakeCamera(digest=("admin", "pw"), session_timeout=2, stale={"GET_PARAMETER": 1},
                        after_play=trickle)
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(camera.serve)
            with trio.move_on_after(1.6):  # keep-alives every 1 s: one, its resend, no other
                # reads every 0.2 s, so that "within a read or two" fits the window
                await RtspOpener(batch_seconds=0.2).run(url_for(camera), {}, Sink())
            nursery.cancel_scope.cancel()
    keepalives = [(t, h) for t, m, h in camera.requests if m == "GET_PARAMETER"]
    assert [s for m, s in camera.answers if m == "GET_PARAMETER"] == [401, 200]
    (first, h1), (resent, h2) = keepalives
    assert resent - first < 0.5
    assert [parse_challenge(h["authorization"]).params["nonce"] for h in (h1, h2)] == [
        "abc123", "abc123+"]
    assert camera.methods().count("OPTIONS") == 1  # only the first request of the session


async def test_a_nonce_stale_forever_is_unauthorized_after_max_sends():
    """A server that calls every answer stale (with a new nonce each time) does not keep us
    looping: after MAX_SENDS sends the request fails as unauthorized, 401 in the message."""
    camera = FakeCamera(digest=("admin", "pw"), stale={"DESCRIBE": 100})
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(camera.serve)
            with pytest.raises(SourceUnavailable) as info:
                await RtspOpener(io_timeout_s=2.0).run(url_for(camera), {}, Sink())
            nursery.cancel_scope.cancel()
    assert info.value.reason == "unauthorized" and "401" in str(info.value)
    assert camera.methods().count("DESCRIBE") == MAX_SENDS == 3


async def test_wrong_password_is_not_sent_a_third_time():
    """The same challenge after our answer means wrong credentials: two DESCRIBEs, then stop."""
    camera = FakeCamera(digest=("admin", "pw"))
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(camera.serve)
            with pytest.raises(SourceUnavailable) as info:
                await RtspOpener(io_timeout_s=2.0).run(url_for(camera, "bad"), {}, Sink())
            nursery.cancel_scope.cancel()
    assert info.value.reason == "unauthorized"
    assert camera.answers == [("OPTIONS", 200), ("DESCRIBE", 401), ("DESCRIBE", 401)]
