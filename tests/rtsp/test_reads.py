"""`reads.route`: the per-read loop's fast path for fragment middles gives exactly what the general
path gives, for H.264 and H.265, through loss, repeats, padding, responses between frames, reads
that split frames anywhere, and a fragment that never ends."""

from __future__ import annotations

import itertools
import random

import pytest

from collector.media.packets import MediaPacket
from collector.rtsp import nal_units, reads
from collector.rtsp.sdp import parse_sdp
from collector.rtsp.session import Session, choose_tracks
from collector.rtsp.tracks import Track
from collector.rtsp.wire import Framer, Response
from tests.rtsp.fake_camera import frame_bytes
from tests.rtsp.packets import (
    PPS,
    SPS,
    aac_payload,
    fu_a,
    h265_payloads,
    rtp,
    slice_nal,
    stap_a,
)

SDP_H264 = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=t\r\nt=0 0\r\n"
    "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=framerate:25\r\na=control:v\r\n"
    "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/1\r\n"
    "a=fmtp:97 mode=AAC-hbr;config=1188;sizelength=13;indexlength=3;indexdeltalength=3\r\n"
    "a=control:a\r\n"
)
VPS = bytes.fromhex("40010c01ffff016000000300b0000003000003005d15c0")
H265_SPS = bytes.fromhex("420101016000000300b0000003000003005da00280802d1f2e44b9")
H265_PPS = bytes.fromhex("4401c172b46240")
SDP_H265 = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=t\r\nt=0 0\r\n"
    "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\na=framerate:25\r\na=control:v\r\n"
)
RESPONSE = b"RTSP/1.0 200 OK\r\nCSeq: 7\r\n\r\n"
AUD_H264 = bytes([0x09, 0xF0])  # access unit delimiters, as GStreamer starts every frame
AUD_H265 = bytes([35 << 1, 1, 0x50])


def session_of(sdp: str) -> Session:
    tracks, _ = choose_tracks(parse_sdp(sdp), "rtsp://cam/")
    session = Session("rtsp://cam/", tracks)
    for i, track in enumerate(tracks):
        session.rtp_channels[2 * i] = track
        session.rtcp_channels[2 * i + 1] = track
    return session


def h264_stream(frames: int, delimiter: bytes | None = None) -> list[bytes]:
    """RTP packets (video on channel 0, AAC on 2): key frames with SPS/PPS in a STAP-A, big
    slices as FU-A, and one AAC packet per frame; each frame led by `delimiter` if given."""
    out = []
    seq = 0
    for i in range(frames):
        ts = 1000 + i * 3600
        payloads = [delimiter] if delimiter else []
        payloads += [stap_a([SPS, PPS])] if i % 10 == 0 else []
        payloads += fu_a(slice_nal(5 if i % 10 == 0 else 1, 5000 + 37 * i, fill=i % 251), 1400)
        for j, payload in enumerate(payloads):
            out.append(frame_bytes(0, rtp(seq, ts, payload, marker=j == len(payloads) - 1)))
            seq += 1
        out.append(frame_bytes(2, rtp(i, 77 + i * 1920, aac_payload([bytes([i % 256]) * 40]),
                                      marker=True, pt=97)))
    return out


def h265_stream(frames: int, delimiter: bytes | None = None) -> list[bytes]:
    out = []
    seq = 0
    for i in range(frames):
        ts = 1000 + i * 3600
        kind = 19 if i % 10 == 0 else 1  # IDR_W_RADL, TRAIL_R
        nals = [delimiter] if delimiter else []
        nals += [VPS, H265_SPS, H265_PPS] if i % 10 == 0 else []
        nals.append(bytes([kind << 1, 1]) + bytes([i % 251]) * (4000 + 41 * i))
        payloads = [p for nal in nals for p in h265_payloads(nal, 1400)]
        for j, payload in enumerate(payloads):
            out.append(frame_bytes(0, rtp(seq, ts, payload, marker=j == len(payloads) - 1)))
            seq += 1
    return out


def record(sdp: str, packets: list[bytes], cuts: list[int], fast: bool
           ) -> tuple[list[MediaPacket], list[tuple[int, ...]], int]:
    """Feed `packets` as reads cut at `cuts` (byte offsets); (packets, per-track RTP counters,
    responses seen)."""
    session = session_of(sdp)
    paths = reads.shortcuts(session) if fast else reads.NO_SHORTCUTS
    data = b"".join(packets)
    framer, batch, responses = Framer(), [], 0
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        framer.feed(data[start:end])
        routed = reads.route(framer, session, paths, [], batch, 0.0)
        responses += sum(isinstance(e, Response) for e in routed.events)
    for track in session.tracks:
        track.flush(batch)
    counters = [(t.rtp.received, t.rtp.lost, t.rtp.dropped, t.depacketizer.dropped_units,
                 getattr(t.depacketizer, "_fu_size", 0)  # the bytes of a fragment still pending
                 if getattr(t.depacketizer, "_fu", None) is not None else 0)
                for t in session.tracks]
    return batch, counters, responses


def both(sdp: str, packets: list[bytes], seed: int) -> tuple:
    rng = random.Random(seed)
    size = sum(map(len, packets))
    cuts = sorted(rng.sample(range(1, size), 40))
    fast, general = record(sdp, packets, cuts, True), record(sdp, packets, cuts, False)
    assert fast == general
    return fast


@pytest.mark.parametrize("seed", range(5))
def test_h264_fast_path_gives_what_the_general_path_gives(seed):
    packets = h264_stream(30)
    shortcuts = reads.shortcuts(session_of(SDP_H264))
    assert shortcuts.video is not None and shortcuts.aac is not None
    assert (shortcuts.video.channel, shortcuts.aac.channel) == (0, 2)  # video and AAC
    batch, counters, responses = both(SDP_H264, packets, seed)
    video = [p for p in batch if p.stream == 0]
    assert len(video) == 30 and len([p for p in batch if p.stream == 1]) == 30
    assert [p.keyframe for p in video] == [i % 10 == 0 for i in range(30)]
    assert counters[0][1:] == (0, 0, 0, 0) and responses == 0


@pytest.mark.parametrize("seed", range(5))
def test_h265_fast_path_gives_what_the_general_path_gives(seed):
    batch, counters, _ = both(SDP_H265, h265_stream(20), seed)
    assert len(batch) == 20 and counters[0][1:] == (0, 0, 0, 0)
    assert [p.keyframe for p in batch] == [i % 10 == 0 for i in range(20)]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("sdp", "stream", "delimiter", "frames"), [
    (SDP_H264, h264_stream, AUD_H264, 30), (SDP_H265, h265_stream, AUD_H265, 20)])
def test_delimiters_take_their_shortcut_and_give_what_the_general_path_gives(
        seed, sdp, stream, delimiter, frames, monkeypatch):
    """A frame that starts with a whole NAL unit (an access unit delimiter): the first packet of
    a unit, with a new RTP time. Only the very first one takes the general path."""
    batch, counters, _ = both(sdp, stream(frames, delimiter), seed)
    video = [p for p in batch if p.stream == 0]
    assert len(video) == frames and counters[0][1:] == (0, 0, 0, 0)
    assert all(bytes(p.data).startswith(nal_units.START_CODE + delimiter) for p in video)
    general: list[bytes] = []
    push_rtp = Track.push_rtp

    def counted(self: Track, data: bytes, out: list[MediaPacket]) -> bool:
        general.append(bytes(data[12:]))
        return push_rtp(self, data, out)

    monkeypatch.setattr(Track, "push_rtp", counted)
    assert record(sdp, stream(frames, delimiter), [], True)[0] == batch
    assert general.count(delimiter) == 1


def test_delimiters_the_shortcut_leaves_alone_take_the_same_course():
    """Delimiters after an unfinished unit, after lost packets, back in time, across the RTP
    time's wrap, and a marked one: both paths give the same."""
    def video(seq: int, ts: int, payload: bytes, marker: bool = False) -> bytes:
        return frame_bytes(0, rtp(seq, ts & 0xFFFF_FFFF, payload, marker=marker))

    start = 0xFFFF_FFFF - 3 * 3600  # wraps at the fourth frame
    packets, seq = [], 0
    for i in range(12):
        ts = start + i * 3600 if i != 6 else start + 2 * 3600  # frame 6 steps back in time
        fragments = fu_a(slice_nal(5 if i == 0 else 1, 3000, fill=i), 1400)
        payloads = ([] if i == 8 else [AUD_H264]) + ([stap_a([SPS, PPS])] if i == 0 else [])
        payloads += fragments
        for j, payload in enumerate(payloads):
            last = j == len(payloads) - 1
            if not (i == 9 and j == 0) and i != 10:  # frame 9's delimiter is lost, all of 10
                packets.append(video(seq, ts, payload, marker=last and i != 3))  # 3: no marker
            seq += 1
    packets.append(video(seq, start + 12 * 3600, AUD_H264, marker=True))  # a marked delimiter
    packets.append(video(seq + 1, start + 13 * 3600, slice_nal(1, 100), marker=True))
    batch, counters, _ = both(SDP_H264, packets, 5)
    # lost: frame 9's delimiter and frame 10's four packets; no unit dropped
    assert counters[0][1:] == (5, 0, 0, 0)
    expected = [3600 * i for i in range(14) if i != 10]  # frame 10 lost
    expected[6] = 3600 * 2  # frame 6 stepped back to frame 2's time
    assert [p.pts for p in batch] == expected


def test_damage_and_junk_take_the_same_course():
    """A lost middle fragment, a repeated packet, one with padding, a response and junk
    between frames, an RTCP packet: both paths count and drop the same."""
    packets = h264_stream(20)  # frame i's packets: 4 FU-A (5 with the STAP-A), then audio
    assert len(packets[6:10]) == 4 and packets[10][1] == 2
    damaged = packets[:7] + packets[8:9] + [packets[8]]  # frame 1 loses a middle, one repeated
    damaged += packets[9:12]
    padded = bytearray(packets[12][4:])  # a middle of frame 2 with one byte of padding
    padded[0] |= 0x20
    damaged.append(frame_bytes(0, bytes(padded) + b"\x01"))
    damaged += [RESPONSE, b"junk", frame_bytes(1, b"\x80\xc8\x00\x01" + bytes(4))]
    damaged += packets[13:]
    batch, counters, responses = both(SDP_H264, damaged, 1)
    assert responses == 1
    _, lost, dropped, units_dropped, _ = counters[0]
    assert (lost, dropped, units_dropped) == (1, 1, 1)
    video = [p for p in batch if p.stream == 0]
    assert len(video) == 19 and 3600 not in [p.pts for p in video]


def test_a_fragment_that_never_ends_is_dropped(monkeypatch):
    """A server sending continuations forever cannot grow a unit without bound (both paths)."""
    monkeypatch.setattr(nal_units, "MAX_ACCESS_UNIT_BYTES", 20_000)
    monkeypatch.setattr(reads, "MAX_ACCESS_UNIT_BYTES", 20_000)
    start = fu_a(slice_nal(1, 3000), 1400)[0]
    middle = bytes([start[0], start[1] & 0x1F]) + bytes(1400)
    packets = [frame_bytes(0, rtp(0, 1000, start))]
    packets += [frame_bytes(0, rtp(i, 1000, middle)) for i in range(1, 40)]
    batch, counters, _ = both(SDP_H264, packets, 2)
    assert counters[0][4] == 0  # nothing held: the unit was dropped when it passed the limit
    packets.append(frame_bytes(0, rtp(40, 4600, slice_nal(1, 100), marker=True)))  # the next frame
    batch, counters, _ = both(SDP_H264, packets, 2)
    assert counters[0][3] == 1 and len(batch) == 1 and len(batch[0].data) == 104


def test_broken_fragments_end_their_unit():
    """A fragment start while another NAL's fragments have not ended, and a middle whose RTP
    time moved on, both with the next sequence number: each ends the unit in progress as
    damaged, on either path."""
    first = fu_a(slice_nal(1, 5000), 1400)
    second = fu_a(slice_nal(1, 5000, fill=7), 1400)
    packets = [frame_bytes(0, rtp(i, 1000, p)) for i, p in enumerate(first[:2])]
    packets += [frame_bytes(0, rtp(2 + i, 1000, p, marker=i == 3))  # no end to `first`
                for i, p in enumerate(second)]
    third = fu_a(slice_nal(1, 5000, fill=9), 1400)
    packets += [frame_bytes(0, rtp(6 + i, 4600 if i < 2 else 8200, p))
                for i, p in enumerate(third[:3])]  # its second middle has the next frame's time
    fourth = fu_a(slice_nal(1, 5000, fill=11), 1400)
    packets += [frame_bytes(0, rtp(9 + i, 8200, p, marker=i == 3)) for i, p in enumerate(fourth)]
    fifth = fu_a(slice_nal(1, 3000, fill=13), 1400)
    packets.append(frame_bytes(0, rtp(13, 11800, fifth[0])))
    other = bytearray(rtp(14, 11800, fifth[1]))
    other[1] = 127  # another payload type (FEC, say) that looks like a middle
    packets += [frame_bytes(0, bytes(other)), frame_bytes(0, rtp(15, 11800, fifth[2], marker=True))]
    packets.append(frame_bytes(0, rtp(16, 15400, slice_nal(1, 100), marker=True)))
    batch, counters, _ = both(SDP_H264, packets, 3)
    # dropped: 1000 (both NALs), 4600, the rest of it and `fourth` at 8200, 11800 (a gap)
    assert counters[0][1:] == (1, 1, 4, 0)
    assert [p.pts for p in batch] == [14400]



def test_aac_takes_the_same_course_on_both_paths():
    """AAC packets through a timestamp wrap, a lost packet, a repeated one, two frames in one
    packet, a frame fragmented over two packets, a step back in time, an unmarked packet and a
    fragment whose tail never comes:
    the shortcut for one whole frame and the general path give the same frames and counts."""
    def aac(seq: int, ts: int, payload: bytes, marker: bool = True) -> bytes:
        return frame_bytes(2, rtp(seq, ts, payload, marker=marker, pt=97))

    start = 0xFFFF_FFFF - 5 * 1024  # wraps after five frames
    frames = [bytes([i]) * (30 + i) for i in range(40)]
    packets = [aac(i, start + i * 1024, aac_payload([frames[i]])) for i in range(12)]
    packets.append(packets[-1])  # repeated
    packets += [aac(i, start + i * 1024, aac_payload([frames[i]])) for i in range(13, 18)]  # no 12
    packets.append(aac(18, start + 18 * 1024, aac_payload(frames[18:20])))  # two frames
    big = bytes([7]) * 3000
    whole = aac_payload([big])
    packets.append(aac(19, start + 20 * 1024, whole[:1500], marker=False))  # a fragmented frame
    packets.append(aac(20, start + 20 * 1024, whole[:4] + whole[1500:]))
    packets.append(aac(21, start + 10 * 1024, aac_payload([frames[21]])))  # back in time
    packets.append(aac(22, start + 21 * 1024, aac_payload([frames[22]]), marker=False))
    packets.append(aac(23, start + 22 * 1024, whole[:1500], marker=False))  # its tail never comes
    packets += [aac(i, start + i * 1024, aac_payload([frames[i]])) for i in range(24, 30)]
    batch, counters, _ = both(SDP_H264, packets, 4)
    audio = [p for p in batch if p.stream == 1]
    assert counters[1][:4] == (29, 1, 1, 1)  # received, lost, dropped, frames dropped
    assert [p.data for p in audio][:3] == frames[:3]
    assert len(audio) >= 25
    assert all(b.pts > a.pts for a, b in itertools.pairwise(audio))
