"""Finding the parameter sets at the head of an H.264 or H.265 access unit
(collector/media/parameter_changes)."""

from __future__ import annotations

from fractions import Fraction

from collector.media.packets import StreamInfo
from collector.media.parameter_changes import (
    ExtradataWatch,
    ParameterSets,
    ParameterWatch,
    avcc_parameter_sets,
    parameter_sets,
)

# 320x240 High profile SPS and its PPS, as x264 writes them
SPS = bytes.fromhex("6764000dacd94141fb011000000300100000030320f1429960")
PPS = bytes.fromhex("68ebe3cb22c0")


def unit(*nals: bytes, slice_size: int = 100) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in (*nals, b"\x65" + b"\x88" * slice_size))


def test_parameter_sets_before_the_first_slice():
    aud = b"\x09\xf0"
    assert parameter_sets(unit(aud, SPS, PPS)) == ParameterSets(None, SPS, (PPS,))
    assert parameter_sets(unit(aud)) == ParameterSets(None, None, ())
    # three-byte start codes, and a PPS after the slice is not the head's
    data = b"\x00\x00\x01" + SPS + b"\x00\x00\x01\x65\x88" + b"\x00\x00\x01" + PPS
    assert parameter_sets(data) == ParameterSets(None, SPS, ())


def test_a_watch_describes_anew_only_on_another_sps():
    info = StreamInfo(index=0, kind="video", codec="h264", time_base=Fraction(1, 90000))
    watch = ParameterWatch(info, SPS)
    assert watch.changed(unit(SPS, PPS)) is None
    other = SPS[:3] + b"\x1e" + SPS[4:]  # another level: a different SPS of the same size
    assert watch.changed(unit(other)) is None  # no PPS with it: not yet, and not forgotten
    described = watch.changed(unit(other, PPS))
    assert described is not None and (described.width, described.height) == (320, 240)
    assert described.extradata == (
        b"\x00\x00\x00\x01" + other + b"\x00\x00\x00\x01" + PPS)
    assert watch.changed(unit(other, PPS)) is None  # the new one is now the session's


# 320x240 Main profile VPS, SPS and PPS, as x265 writes them
VPS5 = bytes.fromhex("40010c01ffff01600000030090000003000003003cba0240")
SPS5 = bytes.fromhex("42010101600000030090000003000003003ca00a080f165ba924caf0168080"
                     "000003008000000c84")
PPS5 = bytes.fromhex("4401c172b46240")
IDR5 = bytes.fromhex("2601") + b"\x88" * 100  # IDR_W_RADL (type 19)


def unit5(*nals: bytes) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in (*nals, IDR5))


def test_h265_parameter_sets_and_a_watch():
    """H.265's NAL types sit in bits 1-6 of a two-byte header; its extradata is VPS, SPS, PPS.
    A key frame that resends no VPS uses the last one seen."""
    assert parameter_sets(unit5(VPS5, SPS5, PPS5), "hevc") == ParameterSets(VPS5, SPS5, (PPS5,))
    assert parameter_sets(unit5(), "hevc") == ParameterSets(None, None, ())
    info = StreamInfo(index=0, kind="video", codec="hevc", time_base=Fraction(1, 90000))
    watch = ParameterWatch(info, SPS5, VPS5)
    assert watch.changed(unit5(VPS5, SPS5, PPS5)) is None
    other = SPS5[:-1] + b"\x85"  # a different SPS of the same size
    described = watch.changed(unit5(other, PPS5))
    assert described is not None and (described.width, described.height) == (320, 240)
    assert described.codec == "hevc"
    assert described.extradata == b"".join(b"\x00\x00\x00\x01" + n for n in (VPS5, other, PPS5))
    assert watch.changed(unit5(VPS5, other, PPS5)) is None


def avcc(sps: bytes, *pps: bytes) -> bytes:
    """An AVCDecoderConfigurationRecord: version 1, profile, compatibility, level, 4-byte NAL
    lengths, one SPS, the PPSs."""
    return (bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps
            + bytes([len(pps)]) + b"".join(len(p).to_bytes(2, "big") + p for p in pps))


def test_the_parameter_sets_of_an_avcc_record():
    pps2 = PPS[:-1] + b"\xc1"
    assert avcc_parameter_sets(avcc(SPS, PPS, pps2)) == ParameterSets(None, SPS, (PPS, pps2))
    record = avcc(SPS, PPS)
    for broken in (b"", record[:-1], record[:8], b"\x00" + record[1:]):  # cut short, version 0
        assert avcc_parameter_sets(broken) == ParameterSets(None, None, ())


def test_an_extradata_watch_describes_anew_on_another_sequence_header():
    """FLV and RTMP send new parameter sets as a new AVC sequence header (FFmpeg: side data):
    another one describes the stream anew, with that record as its extradata; the same one
    again, or one that cannot be read, does not."""
    info = StreamInfo(index=1, kind="video", codec="h264", time_base=Fraction(1, 1000))
    watch = ExtradataWatch(info, avcc(SPS, PPS))
    assert watch.changed(avcc(SPS, PPS)) is None
    assert watch.changed(avcc(SPS)) is None  # no PPS
    assert watch.changed(avcc(SPS, PPS)[:-3]) is None  # cut short
    other = SPS[:3] + b"\x1e" + SPS[4:]
    described = watch.changed(avcc(other, PPS))
    assert described is not None and described.index == 1 and described.codec == "h264"
    assert (described.width, described.height) == (320, 240)
    assert described.extradata == avcc(other, PPS) and described.time_base == Fraction(1, 1000)
    assert described.template is not None and described.template.codec_context.width == 320
    assert watch.changed(avcc(other, PPS)) is None  # now the session's
