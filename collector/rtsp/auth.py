"""RTSP authentication (RFC 2617 as RTSP uses it): Basic and Digest (MD5, SHA-256; qop=auth).

`Authorizer.choose()` picks one of a 401's challenges and remembers it, so that `header()` gives
every later request a fresh Authorization value without another round trip. `answer()` decides
what a 401 means once credentials were sent: a Digest nonce that went stale (`stale=true`, or a
new nonce: RFC 7616 3.3) is answered again, the same challenge again means the credentials were
refused.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # "basic" or "digest"
    params: dict[str, str]


def parse_challenge(value: str) -> Challenge:
    scheme, _, rest = value.strip().partition(" ")
    params = {m[1].lower(): re.sub(r"\\(.)", r"\1", m[2]) if m[2] is not None else m[3]
              for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """The URL without its userinfo (what goes on the wire), and the decoded user and password."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, unquote(parts.username), unquote(parts.password or "")


@dataclass(slots=True)
class Authorizer:
    user: str
    password: str
    challenge: Challenge | None = None
    _nc: int = 0
    _cnonce: str = field(default_factory=lambda: os.urandom(8).hex())

    def choose(self, challenges: tuple[str, ...]) -> bool:
        """Pick the strongest challenge we can answer (Digest over Basic); False if none."""
        parsed = [parse_challenge(c) for c in challenges]
        digest = [c for c in parsed if c.scheme == "digest"
                  and c.params.get("algorithm", "MD5").upper() in _HASHES]
        basic = [c for c in parsed if c.scheme == "basic"]
        candidates = digest or basic
        if not candidates:
            return False
        chosen = candidates[0]
        self.challenge, self._nc = chosen, 0
        return True

    def answer(self, challenges: tuple[str, ...]) -> bool:
        """After a 401: take one of its challenges; True when sending again can succeed.

        That is the first challenge we see, or a Digest challenge whose nonce went stale
        (`stale=true`, or simply a nonce other than the one we answered: RFC 7616 3.3 lets a
        server rotate nonces). The challenge we already answered, again, means wrong credentials.
        Callers bound how often they send again: a server may rotate nonces on every 401.
        """
        previous = self.challenge
        if not self.choose(challenges):
            return False
        if previous is None:
            return True
        chosen = self.challenge
        assert chosen is not None
        if chosen.scheme != "digest":
            return previous.scheme != chosen.scheme
        stale = chosen.params.get("stale", "").strip().lower() == "true"
        return stale or previous.scheme != "digest" or (
            chosen.params.get("nonce") != previous.params.get("nonce"))

    def header(self, method: str, uri: str) -> str | None:
        """The Authorization value for a request, or None before any challenge."""
        c = self.challenge
        if c is None:
            return None
        if c.scheme == "basic":
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")
            return f"Basic {token}"
        algorithm = c.params.get("algorithm", "MD5").upper()
        h = _HASHES[algorithm]

        def hx(text: str) -> str:
            return h(text.encode("utf-8")).hexdigest()

        realm, nonce = c.params.get("realm", ""), c.params.get("nonce", "")
        ha1 = hx(f"{self.user}:{realm}:{self.password}")
        ha2 = hx(f"{method}:{uri}")
        fields = [f'username="{self.user}"', f'realm="{realm}"', f'nonce="{nonce}"',
                  f'uri="{uri}"']
        qops = [q.strip() for q in c.params.get("qop", "").split(",") if q.strip()]
        if "auth" in qops:
            self._nc += 1
            nc = f"{self._nc:08x}"
            response = hx(f"{ha1}:{nonce}:{nc}:{self._cnonce}:auth:{ha2}")
            fields += [f'response="{response}"', "qop=auth", f"nc={nc}",
                       f'cnonce="{self._cnonce}"']
        else:
            fields.append(f'response="{hx(f"{ha1}:{nonce}:{ha2}")}"')
        if "opaque" in c.params:
            fields.append(f'opaque="{c.params["opaque"]}"')
        if "algorithm" in c.params:
            fields.append(f"algorithm={c.params['algorithm']}")
        return "Digest " + ", ".join(fields)
