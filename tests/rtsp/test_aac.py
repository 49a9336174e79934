"""AAC depacketizing (RFC 3640 AAC-hbr), from RTP packets built here."""

from __future__ import annotations

from collector.rtsp.aac import AacConfig, AacDepacketizer
from collector.rtsp.rtp import RtpTrack, parse_rtp
from tests.rtsp.packets import aac_payload, rtp

FMTP = {"mode": "AAC-hbr", "sizelength": "13", "indexlength": "3", "indexdeltalength": "3",
        "config": "1188"}


def test_several_frames_per_packet_get_consecutive_timestamps():
    """Frame i of a packet is at timestamp + i * 1024 and comes out byte-exact."""
    dep = AacDepacketizer(AacConfig.from_fmtp(FMTP))
    frames = [b"\x01" * 100, b"\x02" * 7, b"\x03" * 300]
    units = dep.push(parse_rtp(rtp(1, 48000, aac_payload(frames), marker=True)), 48000, 0)
    assert [(u.timestamp, u.data, u.keyframe) for u in units] == [
        (48000, frames[0], True), (49024, frames[1], True), (50048, frames[2], True)]


def test_config_gives_the_audio_specific_config_and_channels():
    """The fmtp config is the AudioSpecificConfig the muxers need; defaults follow RFC 3640."""
    cfg = AacConfig.from_fmtp(FMTP)
    assert cfg.config == b"\x11\x88" and cfg.channels() == 1
    assert (cfg.size_length, cfg.index_length, cfg.frame_samples) == (13, 3, 1024)


def test_fragmented_frame_is_reassembled():
    """A frame bigger than a packet spans several with one timestamp; the last has the marker."""
    frame = bytes(range(256)) * 10
    header = aac_payload([frame])[:4]  # AU-headers-length + the one AU header (full size)
    dep = AacDepacketizer(AacConfig.from_fmtp(FMTP))
    parts = [frame[:1000], frame[1000:2000], frame[2000:]]
    units = []
    for i, part in enumerate(parts):
        pkt = parse_rtp(rtp(10 + i, 0, header + part, marker=i == 2))
        units += dep.push(pkt, 0, 0)
    assert [u.data for u in units] == [frame]


def test_lost_fragment_drops_the_frame_and_later_frames_come_through():
    """A loss inside a fragmented frame drops it (counted); the next packet is decoded normally."""
    frame = b"\x55" * 2500
    header = aac_payload([frame])[:4]
    dep, track = AacDepacketizer(AacConfig.from_fmtp(FMTP)), RtpTrack()
    packets = [rtp(1, 0, header + frame[:1000]), rtp(3, 0, header + frame[2000:], marker=True),
               rtp(4, 1024, aac_payload([b"\x66" * 50]), marker=True)]
    units = []
    for raw in packets:
        pkt = parse_rtp(raw)
        lost, ts = track.accept(pkt) or (0, 0)
        units += dep.push(pkt, ts, lost)
    assert [u.data for u in units] == [b"\x66" * 50]
    assert dep.dropped_units == 1 and track.lost == 1


def test_truncated_packet_drops_only_missing_frames():
    """AU headers promising more bytes than the packet holds: the complete frames still count."""
    payload = aac_payload([b"\x01" * 10, b"\x02" * 10])[:-5]
    dep = AacDepacketizer(AacConfig.from_fmtp(FMTP))
    units = dep.push(parse_rtp(rtp(1, 0, payload, marker=True)), 0, 0)
    assert [u.data for u in units] == [b"\x01" * 10]
    assert dep.dropped_units == 1


def test_one_frame_per_packet_whole_short_or_the_start_of_a_fragment():
    """The usual packet (one AU header, one frame: a shortcut in the depacketizer) gives the
    same as the general reading: the frame when its size fills the packet, the frame without
    what follows it when the packet is longer, a fragment's start when it is shorter."""
    dep = AacDepacketizer(AacConfig.from_fmtp(FMTP))
    whole = aac_payload([b"\x07" * 200])
    assert [(u.timestamp, u.data) for u in dep.push_payload(whole, True, 5, 0)] == [
        (5, b"\x07" * 200)]
    assert [u.data for u in dep.push_payload(whole + b"pad", True, 6, 0)] == [b"\x07" * 200]
    header = aac_payload([b"\x08" * 300])[:4]
    assert dep.push_payload(header + b"\x08" * 100, False, 7, 0) == []
    assert [u.data for u in dep.push_payload(header + b"\x08" * 200, True, 7, 0)] == [
        b"\x08" * 300]
    assert dep.dropped_units == 0
