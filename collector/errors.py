"""Our own exception tree. Foreign errors (FFmpeg, OSError, trio timeouts) are translated into
these at the boundary where they happen, so the actors only ever reason about these types.

    CollectorError
    ├── RequestError          bad input from a client; carries the field and the problem (HTTP 4xx)
    │   ├── NotFound          an id that names nothing (HTTP 404)
    │   └── RangeNotSatisfiable  a download's byte range lies past the file's end (HTTP 416)
    ├── SourceError           a camera could not be read; `reason` is a short machine word
    │   ├── SourceUnavailable refused, DNS, timeout, stall, TLS, 401/404, a redirect not followed
    │   ├── SourceEnded       the stream ended (EOF / TCP close) while we still wanted video
    │   └── UnsupportedSource no video stream, a codec the container cannot hold
    └── SegmentError          a segment file could not be written
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base of every error the collector raises on purpose."""


class RequestError(CollectorError):
    """A client sent something we refuse. `field` names the offending input."""

    status = 400

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def as_json(self) -> dict[str, str]:
        return {"error": self.problem, "field": self.field}

    def headers(self) -> dict[str, str]:
        return {}


class NotFound(RequestError):
    status = 404


class RangeNotSatisfiable(RequestError):
    status = 416

    def __init__(self, size: int) -> None:
        super().__init__("Range", f"no byte of the range is in the file ({size} bytes)")
        self.size = size

    def headers(self) -> dict[str, str]:
        return {"Content-Range": f"bytes */{self.size}"}


class SourceError(CollectorError):
    """A source failed. `reason` is one word (refused, timeout, unauthorized, not_found, ...)."""

    reason = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class SourceUnavailable(SourceError):
    reason = "unavailable"


class SourceEnded(SourceError):
    reason = "ended"

    def __init__(self, message: str, *, reason: str | None = None,
                 finished: bool = False) -> None:
        super().__init__(message, reason=reason)
        # Read to its end: a file over HTTP (its size was given) or a VOD playlist. There is no
        # more to it, so a job does not wait for a reconnection, which would read it again.
        self.finished = finished


class UnsupportedSource(SourceError):
    reason = "unsupported"


class SegmentError(CollectorError):
    """Writing a segment file failed (disk full, muxer refused the packets)."""
