"""Byte ranges of a segment download (RFC 9110, section 14): one range, or the whole file.

Players seek in a recording by asking for a byte range. Quart 0.22's own handling
(`send_file(conditional=True)`) answers a suffix range (`bytes=-500`) with a 500 and names a range
that runs past the end in its `Content-Range` as asked rather than as sent, so the download route
reads the header here and gives Quart's file body the bounds.

What a server may ignore is ignored, and the whole file is sent (200): another unit than bytes, a
malformed header, several ranges (a multipart answer is more than any player needs), and an
`If-Range` that names another version of the file. A well-formed range that starts at or past the
end is `Unsatisfiable` (416).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    stop: int  # exclusive

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.stop - 1}/{size}"


class Unsatisfiable(Exception):
    """No byte of the file is in the range asked for."""


def _number(text: str) -> int | None:
    text = text.strip(" \t")
    return int(text) if text.isascii() and text.isdigit() else None


def byte_range(header: str | None, size: int) -> ByteRange | None:
    """The one range of `header` within a file of `size` bytes; None for the whole file."""
    if header is None:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip(" \t").lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.partition("-")
    if not dash:
        return None
    if not first.strip(" \t"):  # a suffix: the last n bytes
        n = _number(last)
        if n is None:
            return None
        if n == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(0, size - n), size)
    start = _number(first)
    end = _number(last) if last.strip(" \t") else start
    if start is None or end is None or end < start:
        return None
    if start >= size:
        raise Unsatisfiable
    return ByteRange(start, min(end + 1, size) if last.strip(" \t") else size)


def range_applies(if_range: str | None, etag: str | None, last_modified: str | None) -> bool:
    """Whether a Range header holds for this version of the file: no `If-Range`, or one that
    names its ETag (strong comparison) or its exact `Last-Modified` date."""
    if if_range is None:
        return True
    if_range = if_range.strip()
    if if_range.startswith('"'):
        return etag is not None and if_range == etag
    return last_modified is not None and if_range == last_modified
