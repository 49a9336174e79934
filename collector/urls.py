"""Source URL policy (which URLs we will ever open) and credential redaction."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from collector.errors import RequestError

ALLOWED_SCHEMES = frozenset({"rtsp", "rtsps", "http", "https", "rtmp", "rtmps"})

# FFmpeg's protocol_whitelist per scheme: what FFmpeg may open underneath (HLS opens its segments
# over http/https/tcp/tls, RTSP opens rtp/udp). `file`, `concat`, `subfile`, `pipe` never appear.
PROTOCOL_WHITELIST = {
    "rtsp": "rtsp,rtp,srtp,udp,tcp",
    "rtsps": "rtsps,rtsp,rtp,srtp,udp,tcp,tls",
    "http": "http,https,tcp,tls,crypto,httpproxy",
    "https": "http,https,tcp,tls,crypto,httpproxy",
    "rtmp": "rtmp,tcp",
    "rtmps": "rtmps,rtmp,tcp,tls",
}

DEMO_URL = "demo://testsrc"

# Everything up to the last '@' before the path: URL parsers (urllib, FFmpeg) split the user
# information off at the last '@', so a password may hold '@' ("admin:p@ss@host"). And, first,
# a password with an unencoded '/' that starts with digits ("admin:1234/x@host"): parsers read
# "admin:1234" as a host and a port, so the URL passes the checks (and fails to connect), but
# the rest of the password (up to its last '@') must not be shown either. The price: an explicit
# port followed by an '@' in the path ("rtsp://cam:554/live@1") is shown as "rtsp://***@1".
_USERINFO = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)"
    r"(?P<userinfo>[^/\s@:]*:\d*/\S*|[^/\s]*)@"
)


def redact(text: str) -> str:
    """Replace the user:password part of every URL in `text` with `***`."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def _check_userinfo(url: str, field: str) -> None:
    """Refuse a URL whose user information a parser would split somewhere else than its writer
    meant: an unencoded '#' or '?' in a password ends the host part early, so the rest of the
    password would be taken for a port or a query, and shown as such. (A '/' in one is refused
    as a bad port, unless the password's start is all digits; an '@' in a path is legal, as in
    CDN stream names, so it is not refused.)"""
    authority = url.partition("://")[2].partition("/")[0]
    userinfo, at, _ = authority.rpartition("@")
    if at and ("#" in userinfo or "?" in userinfo):
        raise RequestError(
            field, "a user name or password holding '#' or '?' must be percent-encoded "
            "(%23, %3F); a query holding '@' needs a path before it (host/?...)"
        )


def check_source_url(url: object, field: str) -> str:
    """Return `url` if we may open it, else raise RequestError naming `field`."""
    if not isinstance(url, str) or not url.strip():
        raise RequestError(field, "must be a non-empty URL string")
    if len(url) > 2048:
        raise RequestError(field, "URL is longer than 2048 characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise RequestError(field, "URL must not contain whitespace or control characters")
    try:
        url.encode()
    except UnicodeEncodeError:  # a lone surrogate: it could not be stored, logged or sent
        raise RequestError(field, "URL must be valid Unicode (it holds a lone surrogate)") from None
    if url == DEMO_URL:
        return url
    _check_userinfo(url, field)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        # urllib's text quotes what it took for the port or host, which can be part of a password
        what = "the port must be a number from 0 to 65535" if "port" in str(exc).lower() else (
            "its host cannot be read")
        raise RequestError(field, f"not a valid URL: {what}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        allowed = ", ".join(sorted(ALLOWED_SCHEMES))
        if not scheme:
            raise RequestError(
                field, f"local paths are not allowed; use a URL with one of {allowed}"
            )
        raise RequestError(field, f"URL scheme {scheme!r} is not allowed; use one of {allowed}")
    if not parts.hostname:
        raise RequestError(field, "URL has no host")
    return url


def check_host_allowed(url: str, field: str, allowed: str) -> None:
    """Against server-side request forgery: with an allowlist configured (comma-separated host
    names, `*.suffix` patterns, IP addresses or CIDR networks), refuse any other host. Names are
    matched as written, not resolved: list a name to allow it."""
    if not allowed.strip() or url == DEMO_URL:
        return
    host = (urlsplit(url).hostname or "").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in (e.strip().lower() for e in allowed.split(",") if e.strip()):
        if entry.startswith("*.") and host.endswith(entry[1:]):
            return
        if entry == host:
            return
        if address is not None and "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return
            except ValueError:
                continue
    raise RequestError(
        field, f"host {host!r} is not in the allowed hosts (COLLECTOR_ALLOWED_HOSTS)"
    )


def scheme_of(url: str) -> str:
    return urlsplit(url).scheme.lower()


def is_pull(url: str) -> bool:
    """Can this source wait for us? HTTP(S) is pulled: a file, an HLS playlist or a live HTTP
    stream simply waits (TCP flow control) while we do not read, so it is read only as fast as its
    jobs record it. RTSP and RTMP push in real time and never wait: a job that lags them is
    dropped. (FFmpeg gives no reliable "this is a file" signal: an MPEG-TS file over HTTP often
    has no duration.)"""
    return scheme_of(url) in ("http", "https")
