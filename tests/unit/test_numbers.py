"""Whole numbers in text from outside (collector/numbers.py)."""

from __future__ import annotations

import pytest

from collector.numbers import ascii_int


@pytest.mark.parametrize(("text", "expected"), [
    ("0", 0), ("007", 7), ("123456789012345678", 123456789012345678),
    ("", None), ("²", None), ("٣", None), ("1²", None), (" 1", None), ("-1", None), ("+1", None),
    ("1_000", None), ("1" * 19, None), ("1" * 5000, None),
])
def test_ascii_int(text, expected):
    assert ascii_int(text) == expected


def test_ascii_int_bounds_the_digits():
    assert ascii_int("200", most_digits=3) == 200
    assert ascii_int("2000", most_digits=3) is None
    assert ascii_int("²", 7) == 7  # the caller's default instead of None
