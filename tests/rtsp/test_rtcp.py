"""RTCP receiver reports: the bytes (RFC 3550 6.4.2, 6.5), the counters behind a report block,
and the opener sending them to the scripted server on each track's RTCP channel."""

from __future__ import annotations

import pytest
import trio

from collector.errors import SourceUnavailable
from collector.rtsp.opener import RtspOpener
from collector.rtsp.rtcp import (
    ReceiverReports,
    Reception,
    ReportBlock,
    SenderInfo,
    receiver_report,
    sdes_cname,
    sender_reports,
)
from collector.rtsp.rtp import RtpPacket, RtpTrack
from collector.rtsp.session import transport_ssrc
from collector.rtsp.wire import encode_interleaved
from tests.rtsp.fake_camera import FakeCamera, LockedStream, frame_bytes, video_frames
from tests.rtsp.test_protocol import CEILING, Sink

REPORTER, SOURCE = 0x01020304, 0xAABBCCDD
# A sender report from SSRC 0x11111111 at NTP 0x12345678.9ABCDEF0, then an SDES (CNAME "cam").
SR = bytes.fromhex("80c80006 11111111 12345678 9abcdef0 00000000 00000000 00000000"
                   "81ca0002 11111111 01036361 6d000000")


def test_receiver_report_bytes():
    """An RR with one block: version 2, RC=1, PT 201, length 7 words, our SSRC, then the block's
    fields in order; an RR without a block is the 8-byte header and our SSRC."""
    block = ReportBlock(ssrc=SOURCE, fraction_lost=64, cumulative_lost=3,
                        highest_seq=0x0001_0005, lsr=0x56789ABC, dlsr=98304)
    assert receiver_report(REPORTER, (block,)).hex(" ", 4) == (
        "81c90007 01020304 aabbccdd 40000003 00010005 00000000 56789abc 00018000")
    assert receiver_report(REPORTER).hex(" ", 4) == "80c90001 01020304"


def test_report_block_clamps_to_its_field_sizes():
    """Cumulative lost is 24-bit signed, fraction 8 bits, DLSR 32 bits: clamped, not wrapped."""
    big = ReportBlock(ssrc=1, fraction_lost=300, cumulative_lost=1 << 30, highest_seq=7,
                      dlsr=1 << 40).encode()
    assert big[4:8] == bytes.fromhex("ff7fffff") and big[-4:] == b"\xff\xff\xff\xff"
    assert ReportBlock(ssrc=1, fraction_lost=0, cumulative_lost=-1,
                       highest_seq=7).encode()[4:8] == bytes.fromhex("00ffffff")


@pytest.mark.parametrize(("cname", "wire"), [
    ("ab", "81ca0003 01020304 01026162 00000000"),  # 9 bytes + 3 of padding
    ("abcde", "81ca0003 01020304 01056162 63646500"),  # 12: the null octet ends the list
    ("abcdef", "81ca0004 01020304 01066162 63646566 00000000"),
])
def test_sdes_cname_is_null_terminated_and_padded(cname: str, wire: str):
    """SDES: one chunk, our SSRC, CNAME item, at least one null octet, padded to 32 bits."""
    assert sdes_cname(REPORTER, cname).hex(" ", 4) == wire


def test_sender_reports_in_a_compound_packet():
    """The SR's SSRC and the middle 32 bits of its NTP time; other packets and a truncated SR
    are skipped."""
    assert list(sender_reports(SR)) == [SenderInfo(0x11111111, 0x56789ABC)]
    assert list(sender_reports(SR[28:])) == []  # the SDES alone
    assert list(sender_reports(SR[:12])) == []  # cut inside the NTP time


def feed(track: RtpTrack, sequences: list[int]) -> None:
    for seq in sequences:
        track.accept(RtpPacket(seq & 0xFFFF, 90 * seq, False, 96, SOURCE, b""))


def test_report_block_counters_across_a_wrap_and_a_loss():
    """Sequence numbers 65530..3 with 1 missing: 9 received, 1 lost, extended highest 65539
    (one cycle), fraction 1/10 of 256; the next interval of 10 clean packets reports fraction
    0 and the same cumulative loss. LSR echoes the last sender report, DLSR counts from its
    arrival in 1/65536 s."""
    track, reception = RtpTrack(), Reception()
    feed(track, [*range(65530, 65536), 0, 2, 3])
    assert reception.block(track, 0.0) is None  # no SSRC known yet
    reception.note_sender_report(SenderInfo(SOURCE, 0x56789ABC), now=10.0)
    first = reception.block(track, 11.5)
    assert first == ReportBlock(ssrc=SOURCE, fraction_lost=256 * 1 // 10, cumulative_lost=1,
                                highest_seq=65539, lsr=0x56789ABC, dlsr=98304)
    feed(track, list(range(4, 14)))
    second = reception.block(track, 12.0)
    assert second is not None
    assert (second.fraction_lost, second.cumulative_lost, second.highest_seq) == (0, 1, 65549)
    assert reception.block(track, 13.0).fraction_lost == 0  # type: ignore[union-attr]


def test_reports_start_one_interval_after_the_first_look_and_cover_every_track():
    """`due` arms the timer on its first call; `packets` gives one compound RR + SDES per RTCP
    channel (a block where the SSRC is known, from SETUP or a sender report; none elsewhere)
    and moves the next report an interval on."""
    reports = ReceiverReports(interval_s=5.0, ssrc=REPORTER)
    reports.expect(1, SOURCE)
    reports.expect(3, None)
    video, audio = RtpTrack(), RtpTrack()
    feed(video, [10, 11, 12])
    feed(audio, [500])
    assert [reports.due(t) for t in (100.0, 104.9, 105.0)] == [False, False, True]
    packets = dict(reports.packets({1: video, 3: audio}, 105.0))
    sdes = sdes_cname(REPORTER, f"camera-collector-{REPORTER:08x}")
    block = ReportBlock(ssrc=SOURCE, fraction_lost=0, cumulative_lost=0, highest_seq=12)
    assert packets == {1: receiver_report(REPORTER, (block,)) + sdes,
                       3: receiver_report(REPORTER) + sdes}
    assert not reports.due(109.9) and reports.due(110.0)
    reports.note_rtcp(3, SR, now=111.0)  # the audio's sender says who it is
    audio_rr = dict(reports.packets({1: video, 3: audio}, 111.5))[3]
    assert audio_rr[:8] == bytes.fromhex("81c90007 01020304") and audio_rr[8:12] == SR[4:8]
    assert reports.sent == 4


def test_transport_ssrc_and_interleaved_encoding():
    """SETUP's `ssrc=` is 8 hex digits; our RTCP goes out $-framed on the channel."""
    assert transport_ssrc("RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=CAFEBABE;mode=play") == (
        0xCAFEBABE)
    assert transport_ssrc("RTP/AVP/TCP;unicast;interleaved=0-1;ssrc=1a") == 0x1A
    assert transport_ssrc("RTP/AVP/TCP;unicast;interleaved=0-1") is None
    assert encode_interleaved(3, b"abc") == b"$\x03\x00\x03abc"


def parse_rr(payload: bytes) -> tuple[int, list[ReportBlock], bytes]:
    """(reporter SSRC, report blocks, what follows the RR) of a compound packet we sent."""
    assert payload[0] >> 6 == 2 and payload[1] == 201
    count, end = payload[0] & 0x1F, 4 + 4 * int.from_bytes(payload[2:4], "big")
    blocks = []
    for i in range(count):
        b = payload[8 + 24 * i : 32 + 24 * i]
        blocks.append(ReportBlock(
            ssrc=int.from_bytes(b[0:4], "big"), fraction_lost=b[4],
            cumulative_lost=int.from_bytes(b[5:8], "big"),
            highest_seq=int.from_bytes(b[8:12], "big"), jitter=int.from_bytes(b[12:16], "big"),
            lsr=int.from_bytes(b[16:20], "big"), dlsr=int.from_bytes(b[20:24], "big")))
    return int.from_bytes(payload[4:8], "big"), blocks, payload[end:]


CAMERA_SDES = bytes.fromhex("81ca0002 11111111 01036361 6d000000")


async def chatter(stream: LockedStream) -> None:
    """RTCP from the camera every 50 ms, without a sender report: keeps the read loop awake."""
    while True:
        await stream.send_all(frame_bytes(1, CAMERA_SDES))
        await trio.sleep(0.05)


async def run_until(camera: FakeCamera, reports: int, interval_s: float = 0.3) -> RtspOpener:
    """Record from `camera` until it has received `reports` RTCP packets from us."""
    # The reports ride on the read loop's wake-ups: pin them (0.1 s) rather than the default.
    opener = RtspOpener(io_timeout_s=2.0, stall_timeout_s=5.0, rtcp_interval_s=interval_s,
                        batch_seconds=0.1)
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(camera.serve)
            nursery.start_soon(opener.run, camera.url, {}, Sink())
            await camera.wait_interleaved(reports)
            nursery.cancel_scope.cancel()
    return opener


async def test_receiver_reports_reach_the_rtcp_channel_with_exact_counters():
    """A one-track camera announcing its SSRC in SETUP sends 10 frames with one packet missing,
    then only RTCP without a sender report (the read loop, and so the report timer, runs while
    anything arrives). Every 0.3 s an RR arrives on the RTCP channel (1) and never on the RTP
    channel: one block about the camera's SSRC, the highest sequence number sent, 1 lost
    (fraction 256/N in the first report, 0 after: nothing new came), no sender report
    (LSR = DLSR = 0), and an SDES CNAME after it."""
    frames = video_frames(10)
    del frames[3]  # a P frame's only packet
    sent = len(frames) + 1  # sequence numbers 0..sent-1, one of them missing

    async def then_rtcp(stream: LockedStream) -> None:
        await stream.send_all(b"".join(frames))
        await chatter(stream)

    camera = FakeCamera(ssrc=0xCAFEBABE, after_play=then_rtcp)
    opener = await run_until(camera, 3)
    play_at = next(t for t, m, _ in camera.requests if m == "PLAY")
    times = [t for t, _, _ in camera.interleaved]
    assert [c for _, c, _ in camera.interleaved] == [1, 1, 1]
    # ~0.3, 0.6, 0.9 s after PLAY: each up to a wake-up (0.1 s) late, the delays not adding up
    assert all(0.3 * k - 0.02 <= t - play_at < 0.3 * k + 0.2 for k, t in enumerate(times, 1))
    reports = [parse_rr(p) for _, _, p in camera.interleaved]
    assert len({reporter for reporter, _, _ in reports}) == 1
    blocks = [blocks[0] for _, blocks, _ in reports]
    assert blocks == [
        ReportBlock(ssrc=0xCAFEBABE, fraction_lost=256 // sent, cumulative_lost=1,
                    highest_seq=sent - 1),
        ReportBlock(ssrc=0xCAFEBABE, fraction_lost=0, cumulative_lost=1, highest_seq=sent - 1),
        ReportBlock(ssrc=0xCAFEBABE, fraction_lost=0, cumulative_lost=1, highest_seq=sent - 1),
    ]
    reporter, _, sdes = reports[0]
    assert sdes == sdes_cname(reporter, f"camera-collector-{reporter:08x}")
    assert opener.statistics().rtcp_reports_sent == 3


async def test_each_track_reports_on_its_own_channel_with_lsr_and_dlsr():
    """Video and audio (interleaved 0-1 and 2-3): the video's sender report comes first, the
    audio has none and no SSRC from SETUP. Each report round sends channel 1 an RR about the
    video's SSRC echoing its NTP time, with DLSR the time since it came (to within a read), and
    channel 3 an RR without a block; nothing goes to the RTP channels 0 and 2."""
    from tests.rtsp.test_wire import SDP as AV_SDP

    sr_sent: list[float] = []

    async def with_sender_report(stream: LockedStream) -> None:
        await stream.send_all(frame_bytes(1, SR))
        sr_sent.append(trio.current_time())
        for frame in video_frames(100):
            await stream.send_all(frame)
            await trio.sleep(0.01)

    camera = FakeCamera(sdp=AV_SDP, after_play=with_sender_report)
    await run_until(camera, 4)
    assert [c for _, c, _ in camera.interleaved] == [1, 3, 1, 3]
    for t, channel, payload in camera.interleaved:
        _, blocks, _ = parse_rr(payload)
        if channel == 3:
            assert blocks == []
            continue
        (block,) = blocks
        assert (block.ssrc, block.lsr, block.cumulative_lost) == (0x11111111, 0x56789ABC, 0)
        assert abs(block.dlsr / 65536 - (t - sr_sent[0])) < 0.15


async def test_reports_stop_with_the_session():
    """Reports come from the session's own loop: once it ends (here a stall: RTCP but no
    media), none follow."""
    async def one_frame(stream: LockedStream) -> None:
        await stream.send_all(b"".join(video_frames(1)))
        await chatter(stream)

    camera = FakeCamera(after_play=one_frame)
    opener = RtspOpener(io_timeout_s=2.0, stall_timeout_s=0.7, rtcp_interval_s=0.2,
                        batch_seconds=0.1)
    with trio.fail_after(CEILING):
        async with trio.open_nursery() as nursery:
            await nursery.start(camera.serve)
            with pytest.raises(SourceUnavailable) as info:
                await opener.run(camera.url, {}, Sink())
            await trio.sleep(0.1)  # let the last one arrive
            count = len(camera.interleaved)
            await trio.sleep(0.5)
            nursery.cancel_scope.cancel()
    assert info.value.reason == "stall"
    assert count >= 2 and len(camera.interleaved) == count  # at ~0.2, 0.4, (0.6) s, then none
