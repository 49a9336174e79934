"""The parts of an SDP session description (RFC 4566) that an RTSP client needs.

Static payload types we know without an rtpmap: 0 (PCMU) and 8 (PCMA), both 8 kHz mono.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from collector.numbers import ascii_int

STATIC_PAYLOADS = {0: ("PCMU", 8000, 1), 8: ("PCMA", 8000, 1)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Media:
    kind: str  # "video", "audio", "application", ...
    payload_type: int
    encoding: str  # upper case: "H264", "MPEG4-GENERIC", "PCMU", ...
    clock_rate: int
    channels: int = 1
    fmtp: dict[str, str] = field(default_factory=dict)  # lower-case keys
    control: str = ""
    framerate: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDescription:
    control: str = ""
    media: tuple[Media, ...] = ()


def parse_sdp(text: str) -> SessionDescription:
    """Parse `text`; a media section keeps its first payload type (the one we will set up)."""
    session_control = ""
    sections: list[dict] = []
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "m":
            parts = value.split()
            if len(parts) < 4:
                continue
            fmts = [n for p in parts[3:] if (n := ascii_int(p)) is not None]
            sections.append({"kind": parts[0], "pt": fmts[0] if fmts else -1, "attrs": []})
        elif kind == "a":
            name, _, arg = value.partition(":")
            if sections:
                sections[-1]["attrs"].append((name.strip().lower(), arg.strip()))
            elif name.strip().lower() == "control":
                session_control = arg.strip()
    return SessionDescription(control=session_control, media=tuple(_media(s) for s in sections))


def _media(section: dict) -> Media:
    pt: int = section["pt"]
    encoding, clock_rate, channels = STATIC_PAYLOADS.get(pt, ("", 0, 1))
    fmtp: dict[str, str] = {}
    control, framerate = "", None
    for name, arg in section["attrs"]:
        if name == "rtpmap":
            num, _, desc = arg.partition(" ")
            if _int(num) != pt:
                continue
            pieces = desc.split("/")
            encoding = pieces[0].upper()
            clock_rate = _int(pieces[1]) if len(pieces) > 1 else 0
            channels = _int(pieces[2]) if len(pieces) > 2 else 1
        elif name == "fmtp":
            num, _, params = arg.partition(" ")
            if _int(num) != pt:
                continue
            for item in params.split(";"):
                key, sep, val = item.strip().partition("=")
                if sep:
                    fmtp[key.strip().lower()] = val.strip()
        elif name == "control":
            control = arg
        elif name == "framerate":
            try:
                framerate = float(arg)
            except ValueError:
                pass
    return Media(kind=section["kind"], payload_type=pt, encoding=encoding, clock_rate=clock_rate,
                 channels=channels or 1, fmtp=fmtp, control=control, framerate=framerate)


def _int(text: str) -> int:
    return ascii_int(text.strip(), 0)


def join_control(base: str, control: str) -> str:
    """The URL a track (or the session) is controlled at.

    Like FFmpeg and most cameras expect, a relative control is appended to the base with a slash
    rather than resolved per RFC 3986 (which would drop the base's last path segment).
    """
    if not control or control == "*":
        return base
    if control.lower().startswith(("rtsp://", "rtsps://")):
        return control
    return base.rstrip("/") + "/" + control.lstrip("/")
