"""RTSP redirects: the policy alone (`redirects.next_url`), then the opener following them between
scripted servers, on one host and across two (127.0.0.1 and 127.0.0.2)."""

from __future__ import annotations

import pytest
import trio

from collector.errors import SourceEnded, SourceUnavailable
from collector.rtsp.opener import RtspOpener
from collector.rtsp.redirects import (
    MAX_REDIRECTS,
    Redirected,
    answer_redirect,
    next_url,
    redirected,
)
from tests.rtsp.fake_camera import FakeCamera, video_frames
from tests.rtsp.test_protocol import CEILING, Sink, send

CAM = "rtsp://u:p%40ss@cam.local/live"


def refused(visited: list[str], location: str, allowed_hosts: str = "") -> str:
    with pytest.raises(SourceUnavailable) as info:
        next_url(visited, location, allowed_hosts=allowed_hosts)
    assert info.value.reason == "redirect"
    assert "p%40ss" not in str(info.value) and "p@ss" not in str(info.value)
    return str(info.value)


def test_credentials_follow_only_on_the_same_host_and_port():
    """Relative and absolute Locations resolve against the URL that answered; the original
    userinfo (still percent-encoded) goes along on the same host and port, nowhere else, and
    userinfo the server put in Location is never used."""
    assert next_url([CAM], "/other?x=1") == "rtsp://u:p%40ss@cam.local/other?x=1"
    assert next_url([CAM], "rtsp://CAM.local:554/b") == "rtsp://u:p%40ss@CAM.local:554/b"
    assert next_url([CAM], "rtsp://cam.local:8554/b") == "rtsp://cam.local:8554/b"
    assert next_url([CAM], "rtsp://other.local/b") == "rtsp://other.local/b"
    assert next_url([CAM], "rtsp://evil:pw@other.local/b") == "rtsp://other.local/b"
    assert next_url([CAM], "rtsps://cam.local/b") == "rtsps://cam.local/b"  # port 322 != 554
    # Back to the original host after a hop elsewhere: its own credentials again.
    assert next_url([CAM, "rtsp://other.local/b"], "rtsp://cam.local/c") == (
        "rtsp://u:p%40ss@cam.local/c")
    assert next_url(["rtsp://cam/x"], "/y") == "rtsp://cam/y"  # no credentials to keep


def test_loops_hops_schemes_and_allowlist_are_refused_with_redacted_urls():
    """A URL seen before (default port spelled or not), a fourth hop, a scheme we do not open,
    rtsps down to rtsp, and a host outside the allowlist: each a `redirect` error that shows the
    chain without the password."""
    assert "redirect loop: rtsp://***@cam.local/live -> rtsp://cam.local:554/live" in refused(
        [CAM], "rtsp://cam.local:554/live")
    hops = [CAM, "rtsp://a/1", "rtsp://b/2", "rtsp://c/3"]
    assert len(hops) == MAX_REDIRECTS + 1
    assert f"more than {MAX_REDIRECTS} redirects" in refused(hops, "rtsp://d/4")
    assert next_url(hops[:-1], "rtsp://c/3") == "rtsp://c/3"  # the third hop is fine
    assert "do not open" in refused([CAM], "http://cam.local/x")
    assert "do not open" in refused([CAM], "file:///etc/passwd")
    assert "down to rtsp" in refused(["rtsps://u:p%40ss@cam.local/x"], "rtsp://cam.local/x")
    text = refused([CAM], "rtsp://10.0.0.9/x", allowed_hosts="cam.local, *.cams.example")
    assert "'10.0.0.9' is not in the allowed hosts" in text
    assert next_url([CAM], "rtsp://b.cams.example/x", allowed_hosts="*.cams.example") == (
        "rtsp://b.cams.example/x")


def test_which_answers_are_followable():
    """301/302/303/307/308 to OPTIONS or DESCRIBE with a Location are followed; 305 Use Proxy, a
    3xx to SETUP, or one without a Location are errors saying so, credentials redacted."""
    assert redirected("DESCRIBE", 302, "x", "rtsp://b/").followable
    assert redirected("OPTIONS", 307, "x", "/b").followable
    proxy = redirected("DESCRIBE", 305, "x", "rtsp://u:pw@proxy/")
    assert not proxy.followable and "proxy rtsp://***@proxy/; not followed" in str(proxy)
    assert not redirected("SETUP", 302, "x", "rtsp://b/").followable
    assert not redirected("DESCRIBE", 302, "x", "").followable
    assert isinstance(proxy, SourceUnavailable) and proxy.reason == "redirect"


def test_how_a_redirect_request_is_answered():
    """A server's REDIRECT: 200 and followable with a Location (our session named or not, its
    timeout parameter ignored), 400 without one, 454 naming another session; the Location is
    shown redacted."""
    status, reason, moved = answer_redirect(
        {"session": "F00D;timeout=60", "location": "rtsp://u:pw@b/x"}, "F00D", "rtsp://a/")
    assert (status, reason) == (200, "OK")
    assert moved is not None and moved.followable and moved.location == "rtsp://u:pw@b/x"
    assert str(moved) == "redirect: the server at rtsp://a/ sent REDIRECT to rtsp://***@b/x"
    assert answer_redirect({"location": "/b"}, "F00D", "x")[0] == 200
    assert answer_redirect({"location": " "}, "F00D", "x") == (400, "Bad Request", None)
    assert answer_redirect({"session": "BEEF", "location": "/b"}, "F00D", "x") == (
        454, "Session Not Found", None)


async def test_describe_redirect_on_the_same_host_keeps_credentials():
    """DESCRIBE answered 302 with a relative Location: a new connection to the new path on the
    same server, which challenges again and gets our credentials; the stream plays from there,
    and the statistics count one redirect and one session."""
    camera = FakeCamera(digest=("admin", "pw"), moved={("DESCRIBE", "/live"): (302, "/other")},
                        after_play=send(video_frames(5), then_close=True))
    opener, sink = RtspOpener(io_timeout_s=2.0), Sink()
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(camera.serve)
            with pytest.raises(SourceEnded) as info:
                await opener.run(f"rtsp://admin:pw@127.0.0.1:{camera.port}/live", {}, sink)
            nursery.cancel_scope.cancel()
    assert [(m, s) for m, s in camera.answers] == [
        ("OPTIONS", 200), ("DESCRIBE", 401), ("DESCRIBE", 302),  # first connection
        ("OPTIONS", 200), ("DESCRIBE", 401), ("DESCRIBE", 200), ("SETUP", 200), ("PLAY", 200)]
    assert camera.targets[3:6] == ["/other", "/other", "/other"]
    assert "/other" in str(info.value) and "***@" in str(info.value)
    assert len(sink.all) == 5
    stats = opener.statistics()
    assert (stats.sessions, stats.redirects) == (1, 1)


async def test_redirect_to_another_host_goes_without_credentials():
    """OPTIONS answered 301 to a server on another host: it is followed on a new connection and
    plays there; our credentials never reach that host (one that asks for them gets a 401 it
    cannot be answered, so the session fails as unauthorized)."""
    first = FakeCamera()
    open_b = FakeCamera(host="127.0.0.2", after_play=send(video_frames(5), then_close=True))
    locked_b = FakeCamera(host="127.0.0.2", digest=("admin", "pw"))
    sink = Sink()
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            for camera in (first, open_b, locked_b):
                await nursery.start(camera.serve)
            url = f"rtsp://admin:pw@127.0.0.1:{first.port}/live"
            first.moved = {("OPTIONS", "/live"): (301, open_b.url)}
            with pytest.raises(SourceEnded):
                await RtspOpener(io_timeout_s=2.0).run(url, {}, sink)
            first.moved = {("OPTIONS", "/live"): (301, locked_b.url)}
            with pytest.raises(SourceUnavailable) as info:
                await RtspOpener(io_timeout_s=2.0).run(url, {}, Sink())
            nursery.cancel_scope.cancel()
    assert first.answers == [("OPTIONS", 301), ("OPTIONS", 301)]
    assert open_b.methods()[:4] == ["OPTIONS", "DESCRIBE", "SETUP", "PLAY"]
    assert len(sink.all) == 5
    assert info.value.reason == "unauthorized"
    assert locked_b.answers == [("OPTIONS", 200), ("DESCRIBE", 401)]
    assert not any("authorization" in h for b in (open_b, locked_b) for _, _, h in b.requests)


async def test_redirect_outside_the_allowed_hosts_is_never_connected():
    """With COLLECTOR_ALLOWED_HOSTS set, a redirect to another host is refused before any
    connection to it: reason redirect."""
    first, other = FakeCamera(), FakeCamera(host="127.0.0.2")
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(first.serve)
            await nursery.start(other.serve)
            first.moved = {("DESCRIBE", "/live"): (302, other.url)}
            opener = RtspOpener(io_timeout_s=2.0, allowed_hosts="127.0.0.1")
            with pytest.raises(SourceUnavailable) as info:
                await opener.run(first.url, {}, Sink())
            nursery.cancel_scope.cancel()
    assert info.value.reason == "redirect" and "not in the allowed hosts" in str(info.value)
    assert other.requests == []


async def test_redirect_loop_and_too_many_hops_end_as_redirect_errors():
    """A loop (/live -> /a -> /live) stops when it comes back, a chain longer than
    MAX_REDIRECTS stops before its fourth hop; both are `redirect` errors that show the chain
    with the password redacted."""
    loop = FakeCamera(moved={("DESCRIBE", "/live"): (302, "/a"),
                             ("DESCRIBE", "/a"): (307, "/live")})
    chain = FakeCamera(moved={("DESCRIBE", f"/{n}"): (302, f"/{n + 1}") for n in range(10)})
    errors = []
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(loop.serve)
            await nursery.start(chain.serve)
            for url in (f"rtsp://u:secret@127.0.0.1:{loop.port}/live",
                        f"rtsp://u:secret@127.0.0.1:{chain.port}/0"):
                with pytest.raises(SourceUnavailable) as info:
                    await RtspOpener(io_timeout_s=2.0).run(url, {}, Sink())
                errors.append(info.value)
            nursery.cancel_scope.cancel()
    assert [e.reason for e in errors] == ["redirect", "redirect"]
    assert all("secret" not in str(e) for e in errors)
    assert str(errors[0]).startswith("redirect loop: rtsp://***@127.0.0.1:")
    assert [t for t, (m, _) in zip(loop.targets, loop.answers, strict=True)
            if m == "DESCRIBE"] == ["/live", "/a"]
    assert f"more than {MAX_REDIRECTS} redirects" in str(errors[1])
    assert [t for t, (m, _) in zip(chain.targets, chain.answers, strict=True)
            if m == "DESCRIBE"] == ["/0", "/1", "/2", "/3"]


@pytest.mark.parametrize(("method", "status"), [("SETUP", 302), ("DESCRIBE", 305)])
async def test_unfollowed_redirects_are_clear_errors(method: str, status: int):
    """A redirect after DESCRIBE, or 305 Use Proxy, is not followed: `redirect` error with the
    status, the method and the Location in the message; no second connection."""
    camera = FakeCamera()
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(camera.serve)
            camera.moved = {(method, path): (status, "rtsp://127.0.0.1:1/elsewhere")
                            for path in ("/live", "/live/trackID=0")}
            with pytest.raises(Redirected) as info:
                await RtspOpener(io_timeout_s=2.0).run(camera.url, {}, Sink())
            nursery.cancel_scope.cancel()
    text = str(info.value)
    assert info.value.reason == "redirect" and not info.value.followable
    assert f"RTSP {method} answered {status}" in text and "rtsp://127.0.0.1:1/elsewhere" in text
    assert camera.methods().count("OPTIONS") == 1
