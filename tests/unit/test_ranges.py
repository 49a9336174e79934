"""Byte ranges of a download: when RFC 9110 asks for 206, 416 or the whole file."""

from __future__ import annotations

import pytest

from collector.ranges import ByteRange, Unsatisfiable, byte_range, range_applies


@pytest.mark.parametrize(("header", "expected"), [
    (None, None),
    ("bytes=0-99", ByteRange(0, 100)),
    ("bytes=900-", ByteRange(900, 1000)),
    ("bytes=900-5000", ByteRange(900, 1000)),
    ("bytes=-1", ByteRange(999, 1000)),
    ("bytes=-5000", ByteRange(0, 1000)),
    ("bytes=999-999", ByteRange(999, 1000)),
    (" Bytes = 1 - 2 ", ByteRange(1, 3)),
    # ignored: the whole file
    ("bytes=0-1,5-6", None), ("bytes=5-4", None), ("bytes=", None), ("bytes=-", None),
    ("bytes=x-1", None), ("bytes=1-x", None), ("bytes=+1-2", None), ("bytes=²-3", None),
    ("bytes 0-1", None), ("pages=0-1", None), ("bytes=0", None),
])
def test_byte_range(header, expected):
    assert byte_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=1000-2000", "bytes=-0"])
def test_unsatisfiable(header):
    with pytest.raises(Unsatisfiable):
        byte_range(header, 1000)


def test_empty_file_has_no_range():
    with pytest.raises(Unsatisfiable):
        byte_range("bytes=-5", 0)


def test_content_range_names_the_last_byte():
    assert ByteRange(10, 20).content_range(1000) == "bytes 10-19/1000"


def test_if_range():
    date = "Sat, 28 Nov 2026 15:00:00 GMT"
    assert range_applies(None, '"a"', date)
    assert range_applies('"a"', '"a"', date)
    assert not range_applies('"b"', '"a"', date)
    assert not range_applies('W/"a"', '"a"', date)
    assert range_applies(date, '"a"', date)
    assert not range_applies("Sat, 28 Nov 2026 15:00:01 GMT", '"a"', date)
    assert not range_applies('"a"', None, None)
