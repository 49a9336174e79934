"""PyAV's and FFmpeg's errors turned into our own (collector.errors), at the boundary where a
source is read, with the URL's credentials redacted."""

from __future__ import annotations

import av
import av.error

from collector.errors import SourceEnded, SourceError, SourceUnavailable, UnsupportedSource
from collector.urls import redact


def map_av_error(exc: BaseException, url: str) -> SourceError:
    """Translate a PyAV/OS error into our tree, with the URL's credentials redacted."""
    shown = redact(url)
    match exc:
        case av.error.HTTPUnauthorizedError() | av.error.HTTPForbiddenError():
            return SourceUnavailable(f"unauthorized (401/403) from {shown}", reason="unauthorized")
        case av.error.HTTPNotFoundError():
            return SourceUnavailable(f"not found (404) at {shown}", reason="not_found")
        case av.error.ConnectionRefusedError():
            return SourceUnavailable(f"connection refused by {shown}", reason="refused")
        case av.error.TimeoutError() | av.error.ExitError():
            return SourceUnavailable(f"timed out reading {shown}", reason="timeout")
        case av.error.EOFError():
            return SourceEnded(f"stream ended at {shown}")
        case av.error.ProtocolNotFoundError() | av.error.DemuxerNotFoundError():
            return UnsupportedSource(f"unsupported protocol or format at {shown}")
        case av.error.FFmpegError() if getattr(exc, "errno", None) in (-2, 2):
            return SourceUnavailable(f"host not found for {shown}", reason="dns")
        case av.error.FFmpegError():
            text = redact(getattr(exc, "strerror", None) or str(exc))
            return SourceUnavailable(f"{text} ({shown})", reason="ffmpeg")
        case OSError():
            return SourceUnavailable(f"{redact(str(exc))} ({shown})", reason="os")
    return SourceError(redact(str(exc)))
