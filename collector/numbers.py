"""Whole numbers in text from outside: HTTP query strings and paths, RTSP headers, SDP.

`str.isdigit()` is true for '²' and for a string of 5000 digits, and `int()` raises on both
(the second against CPython's 4300-digit limit), so `x.isdigit()` then `int(x)` let a client's
query string answer 500 and a camera's reply kill the process. Use `ascii_int`.
"""

from __future__ import annotations

from typing import overload


@overload
def ascii_int(text: str, default: None = None, *, most_digits: int = 18) -> int | None: ...
@overload
def ascii_int(text: str, default: int, *, most_digits: int = 18) -> int: ...
def ascii_int(text: str, default: int | None = None, *, most_digits: int = 18) -> int | None:
    """`text` as a non-negative integer when it is 1 to `most_digits` ASCII digits, else
    `default`."""
    if 0 < len(text) <= most_digits and text.isascii() and text.isdigit():
        return int(text)
    return default
