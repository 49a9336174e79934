"""H.264 depacketizing (RFC 6184), from RTP packets built here: no network, no clock."""

from __future__ import annotations

from collector.rtsp.h264 import H264Depacketizer, SpsInfo, parse_sprop, parse_sps
from collector.rtsp.rtp import AccessUnit, RtpPacket, RtpTrack, parse_rtp
from tests.rtsp.packets import PPS, SPS, h264_frame, rtp, slice_nal, stap_a

SC = b"\x00\x00\x00\x01"


def feed(packets: list[RtpPacket], dep: H264Depacketizer | None = None,
         track: RtpTrack | None = None) -> tuple[list[AccessUnit], H264Depacketizer]:
    dep = dep or H264Depacketizer()
    track = track or RtpTrack()
    units = []
    for pkt in packets:
        accepted = track.accept(pkt)
        if accepted is not None:
            units += dep.push(pkt, accepted[1], accepted[0])
    return units, dep


def nal_types(unit: AccessUnit) -> list[int]:
    return [n[0] & 0x1F for n in unit.data.split(SC)[1:]]


def test_fragmented_idr_is_reassembled_into_one_annex_b_unit():
    """FU-A fragments of one IDR come out as one key frame, byte-exact, with start codes."""
    idr = slice_nal(5, 5000)
    units, dep = feed(h264_frame([SPS, PPS, idr], seq=10, ts=9000, mtu=1000))
    assert len(units) == 1
    assert units[0].data == SC + SPS + SC + PPS + SC + idr
    assert units[0].keyframe and units[0].timestamp == 9000
    assert dep.extradata == SC + SPS + SC + PPS
    assert dep.dropped_units == 0


def test_stap_a_and_single_nal_units_form_one_access_unit():
    """A STAP-A (SPS+PPS) and a single-NAL IDR with the same timestamp are one unit."""
    idr = slice_nal(5, 300)
    packets = [parse_rtp(rtp(1, 0, stap_a([SPS, PPS]))), parse_rtp(rtp(2, 0, idr, marker=True))]
    units, _ = feed(packets)
    assert [nal_types(u) for u in units] == [[7, 8, 5]]


def test_timestamp_change_ends_a_unit_without_marker():
    """Servers that never set the marker bit still get units cut at each new timestamp."""
    a, b = slice_nal(1, 100, 1), slice_nal(1, 100, 2)
    packets = [parse_rtp(rtp(1, 0, a)), parse_rtp(rtp(2, 3600, b))]
    units, dep = feed(packets)
    assert [(u.timestamp, u.data) for u in units] == [(0, SC + a)]
    assert [(u.timestamp, u.data) for u in dep.flush()] == [(3600, SC + b)]


def test_parameter_sets_from_sdp_go_before_an_idr_that_lacks_them():
    """A key frame without in-band SPS/PPS gets the SDP's: each segment decodes from its start."""
    import base64

    sprop = f"{base64.b64encode(SPS).decode()},{base64.b64encode(PPS).decode()}"
    dep = H264Depacketizer.from_fmtp({"sprop-parameter-sets": sprop})
    idr, p = slice_nal(5, 200), slice_nal(1, 50)
    units, _ = feed(h264_frame([idr], 1, 0) + h264_frame([p], 2, 3600), dep)
    assert nal_types(units[0]) == [7, 8, 5]
    assert nal_types(units[1]) == [1]
    assert parse_sprop(sprop) == [SPS, PPS]


def test_in_band_parameter_sets_replace_the_sdp_ones():
    """The stream's own (newer) SPS is what later key frames get, and what extradata reports."""
    dep = H264Depacketizer([b"\x67old", PPS])
    units, _ = feed(h264_frame([SPS, PPS, slice_nal(5, 100)], 1, 0)
                    + h264_frame([slice_nal(5, 100)], 4, 3600), dep)
    assert units[1].data.startswith(SC + SPS + SC + PPS)
    assert dep.sps == SPS


def test_repeated_parameter_sets_between_slices_are_dropped():
    """SPS/PPS repeated before a picture's second slice would split it in MPEG-TS: not emitted."""
    s1, s2 = slice_nal(5, 100, 1), slice_nal(5, 100, 2)
    units, _ = feed(h264_frame([SPS, PPS, s1, SPS, PPS, s2], 1, 0))
    assert nal_types(units[0]) == [7, 8, 5, 5]


def test_lost_fragment_drops_the_damaged_unit_only():
    """A lost FU-A fragment drops that frame (counted), and the next frame comes out intact."""
    frame1 = h264_frame([slice_nal(1, 3000, 1)], seq=1, ts=0, mtu=1000)  # 3 fragments
    frame2 = h264_frame([slice_nal(1, 500, 2)], seq=4, ts=3600)
    units, dep = feed([frame1[0], frame1[2], *frame2])
    assert [u.timestamp for u in units] == [3600]
    assert dep.dropped_units == 1


def test_lost_marker_packet_does_not_emit_the_truncated_unit():
    """If a unit's last packet is lost, the unit is dropped when the next timestamp arrives."""
    frame1 = h264_frame([slice_nal(1, 2500, 1)], seq=1, ts=0, mtu=1000)  # 3 fragments
    frame2 = h264_frame([slice_nal(1, 100, 2)], seq=4, ts=3600)
    units, dep = feed([*frame1[:2], *frame2])
    assert [u.timestamp for u in units] == [3600]
    assert dep.dropped_units == 1


def test_continuation_without_start_is_dropped():
    """Joining a stream mid-FU (first packets never seen) produces nothing until a clean unit."""
    frame1 = h264_frame([slice_nal(1, 2500)], seq=1, ts=0, mtu=1000)
    frame2 = h264_frame([slice_nal(1, 100)], seq=4, ts=3600)
    units, dep = feed([*frame1[1:], *frame2])
    assert [u.timestamp for u in units] == [3600]
    assert dep.dropped_units == 1


def test_sequence_and_timestamp_wrap_are_seamless():
    """Sequence 65535 -> 0 is not loss; RTP time 2^32 - 1800 -> +1800 keeps counting up."""
    start = 0x1_0000_0000 - 3600
    packets = []
    for i in range(4):
        packets += h264_frame([slice_nal(1, 80, i)], seq=65534 + i, ts=start + 3600 * i)
    track = RtpTrack()
    units, dep = feed(packets, track=track)
    units += dep.flush()
    assert [u.timestamp - start for u in units] == [0, 3600, 7200, 10800]
    assert track.lost == 0 and dep.dropped_units == 0


def test_duplicate_and_late_packets_are_dropped_and_counted():
    """A repeated sequence number is dropped, not treated as 65535 lost packets."""
    p1 = h264_frame([slice_nal(1, 80)], seq=7, ts=0)[0]
    p2 = h264_frame([slice_nal(1, 80)], seq=8, ts=3600)[0]
    track = RtpTrack()
    units, _ = feed([p1, p2, p1], track=track)
    assert len(units) == 2
    assert (track.lost, track.dropped, track.received) == (0, 1, 2)


def test_sequence_gap_counts_lost_packets():
    """Packets missing between two received ones are counted as lost."""
    track = RtpTrack()
    feed([h264_frame([slice_nal(1, 80)], seq=s, ts=s * 3600)[0] for s in (1, 2, 6)], track=track)
    assert track.lost == 3


def test_sps_gives_picture_size_frame_rate_and_reorder_depth():
    """Width/height after cropping (1080p has 8 lines cropped), fps and max_num_reorder_frames
    from the VUI (x264 writes 2 for B-pyramids, 0 without B-frames)."""
    assert parse_sps(SPS) == SpsInfo(320, 240, 25.0, 0)
    # x264 1920x1080 High profile (coded as 1088 lines, cropped), 30 fps, 3 B-frames.
    sps_1080 = bytes.fromhex("67640028acd940780227e5c044000003000400000300f03c60c658")
    assert parse_sps(sps_1080) == SpsInfo(1920, 1080, 30.0, 2)


def test_a_unit_with_other_parameter_sets_is_a_parameter_change():
    """The first in-band SPS, and later an SPS other than the last one, make their units
    `ParameterChange`s (the camera was reconfigured); the same SPS/PPS repeated at every key
    frame does not, nor does a unit without parameter sets."""
    sps_b = bytes.fromhex("674d4015d901e0bfe5c044000003000400000300c83c58b920")  # 480x360
    idr = slice_nal(5, 100)
    units, dep = feed(h264_frame([SPS, PPS, idr], 1, 0) + h264_frame([slice_nal(1, 50)], 4, 3600)
                      + h264_frame([SPS, PPS, idr], 5, 7200)
                      + h264_frame([sps_b, PPS, idr], 8, 10800)
                      + h264_frame([slice_nal(1, 50)], 11, 14400))
    assert [type(u).__name__ for u in units] == ["ParameterChange", "AccessUnit", "AccessUnit",
                                                 "ParameterChange", "AccessUnit"]
    assert dep.extradata == SC + sps_b + SC + PPS
    assert isinstance(units[3], AccessUnit) and units[3].keyframe  # still an access unit


def test_picture_parameter_sets_are_kept_by_id():
    """A PPS of another id is one more (some encoders use two): both go into the extradata, in
    id order, and that is no change; a PPS of a known id with other content is one."""
    pps_1 = bytes.fromhex("68ce3c80")  # pic_parameter_set_id 0, other content
    pps_id_1 = bytes.fromhex("685e3c80")  # pic_parameter_set_id 1 (ue 010)
    dep = H264Depacketizer([SPS, PPS])
    units, _ = feed(h264_frame([pps_id_1, slice_nal(5, 100)], 1, 0)
                    + h264_frame([pps_1, slice_nal(5, 100)], 3, 3600)
                    + h264_frame([slice_nal(1, 50)], 5, 7200), dep)
    assert [type(u).__name__ for u in units] == ["AccessUnit", "ParameterChange", "AccessUnit"]
    assert dep.extradata == SC + SPS + SC + pps_1 + SC + pps_id_1
