"""The RTSP client against a scripted in-process server: auth, errors, stalls, bad bytes."""

from __future__ import annotations

import pytest
import trio

from collector.errors import SourceEnded, SourceError, SourceUnavailable, UnsupportedSource
from collector.media.packets import MediaPacket, StreamInfo
from collector.rtsp.opener import RtspOpener
from tests.rtsp.fake_camera import (
    RTCP_SENDER_REPORT,
    FakeCamera,
    LockedStream,
    frame_bytes,
    record_until_end,
    video_frames,
)

CEILING = 10  # seconds: no test here may take longer


class Sink:
    def __init__(self) -> None:
        self.streams: list[tuple[StreamInfo, ...]] = []
        self.batches: list[list[MediaPacket]] = []
        self.got_packets = trio.Event()

    def opened(self, streams: tuple[StreamInfo, ...], reconfigured: bool = False) -> None:
        self.streams.append(streams)

    def packets(self, batch) -> None:  # type: ignore[no-untyped-def]
        self.batches.append(list(batch))
        self.got_packets.set()

    @property
    def all(self) -> list[MediaPacket]:
        return [p for b in self.batches for p in b]


def send(frames: list[bytes], *, then_close: bool = False, tail: bytes = b""):  # type: ignore[no-untyped-def]
    async def after_play(stream: LockedStream) -> None:
        await stream.send_all(b"".join(frames) + tail)
        if then_close:
            await stream.aclose()
        else:
            await trio.sleep_forever()

    return after_play


async def run_against(camera: FakeCamera, *, io_timeout_s: float = 2.0,
                      stall_timeout_s: float = 2.0,
                      opener: RtspOpener | None = None) -> tuple[Sink, SourceError]:
    sink = Sink()
    if opener is None:
        opener = RtspOpener(io_timeout_s=io_timeout_s, stall_timeout_s=stall_timeout_s)
    error = await record_until_end(camera, opener, sink, ceiling=CEILING)
    assert isinstance(error, SourceError)
    return sink, error


async def test_digest_challenge_then_success_and_clean_end_on_close():
    """401 with a Digest challenge is answered from the URL's userinfo; the stream then plays, and
    a server closing TCP ends the session with SourceEnded after every complete frame arrived."""
    camera = FakeCamera(digest=("admin", "s3cr:t"), after_play=send(video_frames(10),
                                                                     then_close=True))
    url = camera_url = "rtsp://admin:s3cr%3At@127.0.0.1:{port}/live"
    sink = Sink()
    opener = RtspOpener(io_timeout_s=2.0, stall_timeout_s=2.0)
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(camera.serve)
            url = camera_url.format(port=camera.port)
            with pytest.raises(SourceEnded) as info:
                await opener.run(url, {}, sink)
            nursery.cancel_scope.cancel()
    assert "s3cr" not in str(info.value) and "***@" in str(info.value)
    assert camera.methods()[:3] == ["OPTIONS", "DESCRIBE", "DESCRIBE"]  # challenge, then answer
    assert "authorization" in camera.requests[2][2]
    assert all("admin" not in headers.get("cseq", "") for _, _, headers in camera.requests)
    (streams,) = sink.streams
    assert (streams[0].codec, streams[0].width, streams[0].height) == ("h264", 320, 240)
    video = sink.all
    assert [p.pts for p in video] == [3600 * n for n in range(10)]
    assert [p.keyframe for p in video] == [n % 5 == 0 for n in range(10)]
    assert all(p.duration == 3600 for p in video)
    assert opener.statistics().rtp_lost == 0


async def test_wrong_password_is_unauthorized_with_status_and_no_credentials():
    """A second 401 is final: reason unauthorized, the status code shown, the password never."""
    camera = FakeCamera(digest=("admin", "right"))
    async with trio.open_nursery() as nursery:
        await nursery.start(camera.serve)
        with trio.fail_after(CEILING), pytest.raises(SourceUnavailable) as info:
            await RtspOpener().run(f"rtsp://admin:wrong@127.0.0.1:{camera.port}/x", {}, Sink())
        nursery.cancel_scope.cancel()
    assert info.value.reason == "unauthorized"
    assert "401" in str(info.value) and "wrong" not in str(info.value)


@pytest.mark.parametrize(
    ("method", "status", "reason"),
    [("PLAY", 454, "session_not_found"), ("DESCRIBE", 404, "not_found"),
     ("SETUP", 500, "unavailable")],
)
async def test_error_status_maps_to_reason(method: str, status: int, reason: str):
    """Each failing status becomes SourceUnavailable with its reason and the code in the text."""
    _, error = await run_against(FakeCamera(fail={method: status}))
    assert isinstance(error, SourceUnavailable) and error.reason == reason
    assert str(status) in str(error) and method in str(error)


async def test_rtcp_without_media_is_a_stall():
    """RTCP keeps flowing but no RTP does: stall after stall_timeout, not at the I/O timeout."""
    async def rtcp_only(stream: LockedStream) -> None:
        await stream.send_all(b"".join(video_frames(3)))
        while True:
            await stream.send_all(frame_bytes(1, RTCP_SENDER_REPORT))
            await trio.sleep(0.1)

    start = trio.current_time()
    sink, error = await run_against(FakeCamera(after_play=rtcp_only), stall_timeout_s=0.6,
                                    io_timeout_s=5.0)
    assert error.reason == "stall"
    assert 0.6 <= trio.current_time() - start < 3
    assert len(sink.all) == 3  # the last one was held back for its duration, then flushed


async def test_close_mid_frame_keeps_complete_frames_only():
    """TCP closed in the middle of an interleaved frame: the frames before it are delivered,
    the torn one is not, and the session ends with SourceEnded."""
    frames = video_frames(6)
    torn = frames[-1][: len(frames[-1]) // 2]
    # Frames 0-4 complete (frame 5's packets: all but the last arrive, then half of it).
    sink, error = await run_against(FakeCamera(after_play=send(frames[:-1], then_close=True,
                                                               tail=torn)))
    assert isinstance(error, SourceEnded)
    assert [p.pts // 3600 for p in sink.all] == [0, 1, 2, 3, 4]


async def test_garbage_between_frames_is_skipped():
    """Junk bytes between interleaved frames are skipped and counted; media continues after."""
    frames = video_frames(4)
    junk = b"\x00\xffjunk\r\n"
    stream = [*frames[:2], junk, *frames[2:]]
    opener = RtspOpener(io_timeout_s=2.0, stall_timeout_s=2.0)
    sink, error = await run_against(FakeCamera(after_play=send(stream, then_close=True)),
                                    opener=opener)
    assert isinstance(error, SourceEnded)
    assert [p.pts // 3600 for p in sink.all] == [0, 1, 2, 3]
    assert opener.statistics().skipped_bytes == len(junk)


async def test_keepalive_and_teardown_on_cancel():
    """GET_PARAMETER goes out at the first read after half the session timeout (at most one read
    period later); cancelling the opener sends a TEARDOWN (bounded, shielded) before the
    connection closes."""
    async def trickle(stream: LockedStream) -> None:
        for frame in video_frames(1000):
            await stream.send_all(frame)
            await trio.sleep(0.01)

    camera = FakeCamera(session_timeout=1, after_play=trickle)
    sink = Sink()
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(camera.serve)
            with trio.move_on_after(2.0):  # keep-alives due every 0.5 s, sent at the next read
                await RtspOpener().run(camera.url, {}, sink)
            await trio.sleep(0.2)  # let the server read the TEARDOWN
            nursery.cancel_scope.cancel()
    methods = camera.methods()
    assert methods[:4] == ["OPTIONS", "DESCRIBE", "SETUP", "PLAY"]
    assert methods.count("GET_PARAMETER") >= 2
    assert methods[-1] == "TEARDOWN"
    assert sink.all


async def test_refused_and_silent_servers():
    """No listener: reason refused. A server that accepts and never answers: reason timeout."""
    with trio.fail_after(CEILING):
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        port = listener.socket.getsockname()[1]
        with pytest.raises(SourceUnavailable) as info:
            await RtspOpener(io_timeout_s=0.5).run(f"rtsp://127.0.0.1:{port}/x", {}, Sink())
        assert info.value.reason == "timeout"  # accepted by the kernel, never answered
        await listener.aclose()
        with pytest.raises(SourceUnavailable) as info:
            await RtspOpener(io_timeout_s=0.5).run(f"rtsp://127.0.0.1:{port}/x", {}, Sink())
        assert info.value.reason == "refused"


async def test_unanswered_play_times_out_and_closes():
    """A server that never answers PLAY: `timeout` after io_timeout_s, not a hang."""
    start = trio.current_time()
    _, error = await run_against(FakeCamera(silent={"PLAY"}), io_timeout_s=0.5)
    assert isinstance(error, SourceUnavailable) and error.reason == "timeout"
    assert trio.current_time() - start < 3


async def test_refused_options_and_server_requests_are_tolerated():
    """A camera that refuses OPTIONS still plays; its own requests to us get an answer, and the
    media around them is unaffected."""
    frames = video_frames(4)
    ping = b"GET_PARAMETER rtsp://x RTSP/1.0\r\nCSeq: 77\r\n\r\n"

    async def with_ping(stream: LockedStream) -> None:
        await stream.send_all(b"".join(frames[:2]) + ping + b"".join(frames[2:]))
        await trio.sleep(0.3)
        await stream.aclose()

    camera = FakeCamera(fail={"OPTIONS": 501}, after_play=with_ping)
    sink, error = await run_against(camera)
    assert isinstance(error, SourceEnded), error
    assert [p.pts // 3600 for p in sink.all] == [0, 1, 2, 3]
    # The fake server logs our answer as if it were a request: "RTSP/1.0 501 ..." with its CSeq.
    assert [(m, h["cseq"]) for _, m, h in camera.requests if m.startswith("RTSP/")] == [
        ("RTSP/1.0", "77")]


async def test_lost_packet_is_counted_and_its_frame_dropped():
    """A sequence gap on the wire: the damaged frame is dropped whole, the others arrive, and the
    opener's statistics count the lost packet and the dropped unit."""
    frames = video_frames(10)  # key frames (0, 5): SPS, PPS, 3 FU-A packets; P frames: 1 each
    del frames[11]  # the middle fragment of frame 5's IDR slice
    opener = RtspOpener(io_timeout_s=2.0, stall_timeout_s=2.0)
    sink, error = await run_against(FakeCamera(after_play=send(frames, then_close=True)),
                                    opener=opener)
    assert isinstance(error, SourceEnded)
    stats = opener.statistics()
    assert (stats.rtp_lost, stats.units_dropped, stats.sessions) == (1, 1, 1)
    assert [p.pts // 3600 for p in sink.all] == [0, 1, 2, 3, 4, 6, 7, 8, 9]


async def test_udp_and_http_transports_go_to_the_fallback_opener():
    """What the native client does not read (UDP or HTTP-tunnelled transport, for rtsp:// and
    rtsps:// alike) is handed to `fallback` unchanged; without a fallback it is
    UnsupportedSource. (rtsps:// over TCP is native: test_tls.py.)"""
    calls = []

    class Fallback:
        async def run(self, url: str, options, sink) -> None:  # type: ignore[no-untyped-def]
            calls.append((url, dict(options)))

    opener = RtspOpener(fallback=Fallback())
    with trio.fail_after(CEILING):
        await opener.run("rtsp://cam/x", {"rtsp_transport": "udp"}, Sink())
        await opener.run("rtsps://cam/x", {"rtsp_transport": "https"}, Sink())
        with pytest.raises(UnsupportedSource):
            await RtspOpener().run("rtsp://u:pw@cam/x", {"rtsp_transport": "udp"}, Sink())
    assert calls == [("rtsp://cam/x", {"rtsp_transport": "udp"}),
                     ("rtsps://cam/x", {"rtsp_transport": "https"})]


async def test_audio_without_sender_reports_plays_at_once():
    """Video + AAC from a server that sends no RTCP: nothing waits for sender reports; both
    streams open at once and every packet arrives, on the first-packet / RTP-Info clocks."""
    from tests.rtsp.packets import aac_payload, rtp
    from tests.rtsp.test_wire import SDP as AV_SDP

    audio = [frame_bytes(2, rtp(i, 1024 * i, aac_payload([bytes([i]) * 20]), marker=True, pt=97))
             for i in range(10)]
    frames = video_frames(5)
    camera = FakeCamera(sdp=AV_SDP, after_play=send([*frames, *audio]))
    sink = Sink()
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(camera.serve)
            with pytest.raises(SourceUnavailable):  # stall once the script ran out
                await RtspOpener(stall_timeout_s=1.0).run(camera.url, {}, sink)
            nursery.cancel_scope.cancel()
    (streams,) = sink.streams
    assert [s.codec for s in streams] == ["h264", "aac"]
    assert [p.pts for p in sink.all if p.stream == 1] == [1024 * i for i in range(10)]
    assert len([p for p in sink.all if p.stream == 0]) == 5
    assert len(sink.batches) == 2  # the first read's packets, then the held-back ones at the stall
