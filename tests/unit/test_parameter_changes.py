"""Finding the parameter sets at the head of an H.264 or H.265 access unit
(collector/media/parameter_changes)."""

from __future__ import annotations

from fractions import Fraction

from collector.media.packets import StreamInfo
from collector.media.parameter_changes import ParameterSets, ParameterWatch, parameter_sets

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
