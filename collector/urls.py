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

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]*)@")


def redact(text: str) -> str:
    """Replace the user:password part of every URL in `text` with `***`."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def check_source_url(url: object, field: str) -> str:
    """Return `url` if we may open it, else raise RequestError naming `field`."""
    if not isinstance(url, str) or not url.strip():
        raise RequestError(field, "must be a non-empty URL string")
    if len(url) > 2048:
        raise RequestError(field, "URL is longer than 2048 characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise RequestError(field, "URL must not contain whitespace or control characters")
    if url == DEMO_URL:
        return url
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise RequestError(field, f"not a valid URL: {redact(str(exc))}") from None
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
