"""Lining tracks up with RTCP sender reports: pure functions over tracks fed RTP packets."""

from __future__ import annotations

from collector.media.packets import MediaPacket
from collector.rtsp.rtp import parse_rtp, parse_sender_report
from collector.rtsp.sdp import parse_sdp
from collector.rtsp.session import choose_tracks
from collector.rtsp.sync import ready_to_sync, sync_origins
from tests.rtsp.packets import aac_payload, rtp, slice_nal
from tests.rtsp.test_wire import SDP


def sender_report(ntp: float, rtp_time: int) -> bytes:
    seconds, fraction = int(ntp), int((ntp % 1) * 2**32)
    return (bytes([0x80, 200, 0, 6]) + bytes(4) + seconds.to_bytes(4, "big")
            + fraction.to_bytes(4, "big") + (rtp_time & 0xFFFFFFFF).to_bytes(4, "big") + bytes(8))


def test_sender_reports_move_audio_onto_the_video_clock() -> None:
    """Video starts (RTP-Info) at wallclock 1000.0; audio's RTP-Info claims its own start, but its
    sender report says that instant is 0.7 s later: audio's origin moves back by 0.7 s, so its
    next packets jump forward (a gap; nothing is repeated). RTP times wrap around 2^32."""
    video, audio = choose_tracks(parse_sdp(SDP), "rtsp://cam/live")[0]
    video.set_origin(0xFFFF_FF00)
    audio.set_origin(5000)
    out: list[MediaPacket] = []
    video.push(parse_rtp(rtp(1, 0xFFFF_FF00, slice_nal(5, 50), marker=True)), out)
    for seq in range(3):
        audio.push(parse_rtp(rtp(seq, 5000 + 1024 * seq, aac_payload([b"\x01" * 9]),
                                 marker=True, pt=97)), out)
    assert [p.pts for p in out] == [0, 1024]  # the last one is held for its duration
    assert not ready_to_sync([video, audio])
    video.sender_report = parse_sender_report(sender_report(1001.0, 0xFFFF_FF00 + 90000))
    audio.sender_report = parse_sender_report(sender_report(1000.0, 5000 - 33600))
    assert ready_to_sync([video, audio])
    assert sync_origins([video, audio]) == {1: 33600}
    assert audio.origin == 5000 - 33600
    audio.push(parse_rtp(rtp(3, 5000 + 3072, aac_payload([b"\x03" * 9]), marker=True, pt=97)),
               out)
    assert [p.pts for p in out] == [0, 1024, 33600 + 2048]


def test_a_clock_moved_back_drops_what_it_would_repeat() -> None:
    """If the sync moves audio earlier, packets whose new time was already handed out are
    dropped (counted) rather than sent twice or backwards."""
    video, audio = choose_tracks(parse_sdp(SDP), "rtsp://cam/live")[0]
    out: list[MediaPacket] = []
    video.push(parse_rtp(rtp(1, 0, slice_nal(5, 50), marker=True)), out)
    for seq in range(4):
        audio.push(parse_rtp(rtp(seq, 1024 * seq, aac_payload([b"\x01" * 9]), marker=True,
                                 pt=97)), out)
    video.sender_report = parse_sender_report(sender_report(1000.0, 0))
    audio.sender_report = parse_sender_report(sender_report(1000.0, 2048))  # audio was late
    assert sync_origins([video, audio]) == {1: -2048}
    for seq in range(4, 7):
        audio.push(parse_rtp(rtp(seq, 1024 * seq, aac_payload([b"\x01" * 9]), marker=True,
                                 pt=97)), out)
    assert [p.pts for p in out if p.stream == 1] == [0, 1024, 2048, 3072]
    assert audio.resync_dropped == 2


def test_without_sender_reports_nothing_moves() -> None:
    """No sender report yet: the RTP-Info / first-packet origins stay as they are."""
    video, audio = choose_tracks(parse_sdp(SDP), "rtsp://cam/live")[0]
    out: list[MediaPacket] = []
    video.push(parse_rtp(rtp(1, 100, slice_nal(5, 50), marker=True)), out)
    assert sync_origins([video, audio]) == {}
    assert video.origin == 100


def test_push_rtp_reads_plain_and_unusual_headers_like_parse_rtp() -> None:
    """The per-packet fast path (`push_rtp`, header read in place) gives the same frames as the
    general parser, including for packets with CSRCs and padding, which take the slow path; and a
    payload type we did not set up is dropped, not decoded."""

    def csrc_and_padding(packet: bytes) -> bytes:
        header, payload = bytearray(packet[:12]), packet[12:]
        header[0] = 0x80 | 0x20 | 1  # padding, one CSRC
        return bytes(header) + b"\x00\x00\x00\x07" + payload + b"\x00\x00\x03"

    packets = [rtp(1, 0, slice_nal(5, 50), marker=True),
               rtp(2, 3600, slice_nal(1, 30), marker=True),
               rtp(3, 7200, slice_nal(1, 30), marker=True),
               rtp(4, 9000, b"\x01", pt=13)]
    slow_video, _ = choose_tracks(parse_sdp(SDP), "rtsp://cam/live")[0]
    fast_video, _ = choose_tracks(parse_sdp(SDP), "rtsp://cam/live")[0]
    slow: list[MediaPacket] = []
    fast: list[MediaPacket] = []
    for i, packet in enumerate(packets):
        slow_video.push(parse_rtp(packet), slow)
        assert fast_video.push_rtp(csrc_and_padding(packet) if i == 1 else packet, fast)
    assert not fast_video.push_rtp(b"\x40" + bytes(11), fast)  # RTP version 1: not RTP
    def frames(packets: list[MediaPacket]) -> list[tuple[int | None, bool, bytes]]:
        return [(p.pts, p.keyframe, p.data) for p in packets]

    assert frames(fast) == frames(slow)
    assert [p.pts for p in fast] == [0, 3600]  # the third frame is held back for its duration
    assert fast_video.rtp.dropped == slow_video.rtp.dropped == 1
