"""RTSP redirects (RFC 2326 11.3.3 and 10.15, RFC 7826 13.5): which ones we follow, and where
to. Pure.

A 3xx answer with a `Location` becomes `Redirected` (a `SourceUnavailable` with reason
`redirect`, so one we do not follow is a clear error as it stands), and so does a server's
REDIRECT request while we play (`answer_redirect`). The opener follows it by opening a new
connection to `next_url(...)`, whether or not the host changed. The policy:

- Only 301, 302, 303, 307 and 308 answers to OPTIONS and DESCRIBE, before any SETUP: later the
  server holds a session of ours that a redirect would strand. 305 Use Proxy is not followed (we go
  through no proxy a server names; HTTP deprecated 305 for that reason, RFC 7231 6.4.5).
- A REDIRECT request during PLAY (the server moving its clients away) with a `Location`: we
  answer 200 and follow it at once (its `Range`, when it takes effect, is not waited for: a live
  stream loses one reconnection either way), after a TEARDOWN of the session the server ended.
  Without a `Location` (mandatory) it is answered 400, and one naming another session 454; we
  play on. Its hops count with those of the 3xx answers before it, under the rules below.
- At most `MAX_REDIRECTS` hops; a URL already visited (the default port made explicit) is a loop.
- `Location` is resolved against the URL that answered; userinfo in it is ignored (the server does
  not choose our credentials). Only `rtsp` and `rtsps`, and never from `rtsps` down to `rtsp`.
- The target must pass `COLLECTOR_ALLOWED_HOSTS` like any URL given to the API: a redirect must not
  reach a host the API would refuse.
- Credentials (the original URL's userinfo) go along only while the host and the port stay those of
  the original URL; any other host or port gets no credentials, as curl does since CVE-2022-27774
  (another port can be another service). A camera that moves us to another host and wants a
  password there must be given that URL directly.

Every URL in an error is redacted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

from collector.errors import RequestError, SourceUnavailable
from collector.urls import check_host_allowed, redact

MAX_REDIRECTS = 3
FOLLOWED_METHODS = frozenset({"OPTIONS", "DESCRIBE"})
FOLLOWED_STATUSES = frozenset({301, 302, 303, 307, 308})
REDIRECT = "REDIRECT"  # the server's request (RFC 2326 10.15)
DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322}


class Redirected(SourceUnavailable):
    """A 3xx answer to `method`, or (`method` REDIRECT, no `status`) a server's REDIRECT
    request: `followable` says whether the opener may follow it to `location`."""

    reason = "redirect"

    def __init__(self, message: str, *, method: str, status: int | None, location: str) -> None:
        super().__init__(message)
        self.method, self.status, self.location = method, status, location
        self.played_s = 0.0  # a REDIRECT request: how long the session it ended had played

    @property
    def followable(self) -> bool:
        if not self.location:
            return False
        return self.method == REDIRECT or (self.method in FOLLOWED_METHODS
                                           and self.status in FOLLOWED_STATUSES)


def redirected(method: str, status: int, answer: str, location: str) -> Redirected:
    """The error for a 3xx answer (`answer` says who answered what, already redacted)."""
    shown = redact(location)
    if not location:
        why = "without a Location"
    elif status == 305:
        why = f"to use the proxy {shown}; not followed"
    elif status not in FOLLOWED_STATUSES:
        why = f"to {shown}; status not followed"
    elif method not in FOLLOWED_METHODS:
        why = f"to {shown}; not followed after DESCRIBE"
    else:
        why = f"to {shown}"
    return Redirected(f"redirect: {answer} {why}", method=method, status=status,
                      location=location)


def answer_redirect(headers: Mapping[str, str], session_id: str | None, shown_url: str
                    ) -> tuple[int, str, Redirected | None]:
    """Our answer (status, reason) to a server's REDIRECT request with these (lower-case)
    `headers`, on the connection of our session `session_id`, and the redirect it makes us
    follow, if any (`shown_url`: the session's URL, redacted)."""
    named = headers.get("session", "").partition(";")[0].strip()
    if named and session_id is not None and named != session_id:
        return 454, "Session Not Found", None
    location = headers.get("location", "").strip()
    if not location:
        return 400, "Bad Request", None
    message = f"redirect: the server at {shown_url} sent REDIRECT to {redact(location)}"
    return 200, "OK", Redirected(message, method=REDIRECT, status=None, location=location)


def next_url(visited: Sequence[str], location: str, *, allowed_hosts: str = "",
             given: str | None = None) -> str:
    """The URL to open after `visited[-1]` redirected to `location`; raises
    SourceUnavailable(reason="redirect") when we will not go there. `visited` is the chain so far
    (loops and MAX_REDIRECTS count along it), `given` the URL we were given, whose credentials go
    only to its own origin (default: `visited[0]`)."""
    first, current = urlsplit(given or visited[0]), urlsplit(visited[-1])
    target = urlsplit(urljoin(_bare(current), location.strip()))
    chain = " -> ".join(redact(u) for u in (*visited, _bare(target)))
    scheme = target.scheme.lower()
    if scheme not in DEFAULT_PORTS or not target.hostname:
        raise _refused(f"redirect to a URL we do not open: {chain}")
    if current.scheme.lower() == "rtsps" and scheme == "rtsp":
        raise _refused(f"redirect from rtsps down to rtsp refused: {chain}")
    try:
        _origin(target)
    except ValueError:
        raise _refused(f"redirect to a bad port: {chain}") from None
    try:
        check_host_allowed(_bare(target), "redirect", allowed_hosts)
    except RequestError as exc:
        raise _refused(f"redirect refused, {exc.problem}: {chain}") from None
    if _key(target) in {_key(urlsplit(u)) for u in visited}:
        raise _refused(f"redirect loop: {chain}")
    if len(visited) > MAX_REDIRECTS:
        raise _refused(f"more than {MAX_REDIRECTS} redirects: {chain}")
    if first.username is not None and _origin(target) == _origin(first):
        userinfo = first.netloc.rpartition("@")[0]
        return urlunsplit(target._replace(netloc=f"{userinfo}@{_hostport(target)}"))
    return _bare(target)


def _refused(message: str) -> SourceUnavailable:
    return SourceUnavailable(message, reason="redirect")


def _hostport(parts: SplitResult) -> str:
    return parts.netloc.rpartition("@")[2]


def _bare(parts: SplitResult) -> str:
    """The URL without userinfo."""
    return urlunsplit(parts._replace(netloc=_hostport(parts)))


def _origin(parts: SplitResult) -> tuple[str, int]:
    scheme = parts.scheme.lower()
    return (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(scheme, 0)


def _key(parts: SplitResult) -> tuple[str, str, int, str, str]:
    host, port = _origin(parts)
    return parts.scheme.lower(), host, port, parts.path or "/", parts.query
