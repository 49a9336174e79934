"""Finding the parameter sets at the head of an H.264 access unit (collector/media/h264_changes)."""

from __future__ import annotations

from fractions import Fraction

from collector.media.h264_changes import ParameterWatch, parameter_sets
from collector.media.packets import StreamInfo

# 320x240 High profile SPS and its PPS, as x264 writes them
SPS = bytes.fromhex("6764000dacd94141fb011000000300100000030320f1429960")
PPS = bytes.fromhex("68ebe3cb22c0")


def unit(*nals: bytes, slice_size: int = 100) -> bytes:
    return b"".join(b"\x00\x00\x00\x01" + n for n in (*nals, b"\x65" + b"\x88" * slice_size))


def test_parameter_sets_before_the_first_slice():
    aud = b"\x09\xf0"
    assert parameter_sets(unit(aud, SPS, PPS)) == (SPS, [PPS])
    assert parameter_sets(unit(aud)) == (None, [])
    # three-byte start codes, and a PPS after the slice is not the head's
    data = b"\x00\x00\x01" + SPS + b"\x00\x00\x01\x65\x88" + b"\x00\x00\x01" + PPS
    assert parameter_sets(data) == (SPS, [])


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
