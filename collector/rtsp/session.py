"""Setting up an RTSP session: OPTIONS, DESCRIBE, SETUP per track (TCP interleaved), PLAY.

The decisions (which tracks, which channels and SSRCs, where each track's RTP clock starts) are
plain functions of what the server said; `start_session` only performs the round trips. Each call
is bounded by the caller (`fail_after` around every request). A redirect answered to OPTIONS or
DESCRIBE propagates as `redirects.Redirected` for the opener to follow on a new connection.

Only what we record is set up. A media we cannot depacketize, and an audio track whose format no
muxer takes (AAC or G.711 with more than 8 channels, a sample rate the AAC template refuses),
are left out before SETUP (`Session.skipped`, with why): the camera never sends them, so nothing
reads, drops or reports on their packets, and the tracks kept are numbered 0, 1, ... as always
(`Track.index` is a track's position in `Session.tracks` and in the opener's description). An
audio track is fully described by its SDP (rate, channels, AAC config), so this is known before
SETUP; a video track may need in-band parameter sets, and one that cannot be described fails the
session once they are known (`Track.info`), as a source without video must.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from collector.errors import SourceError, UnsupportedSource
from collector.numbers import ascii_int
from collector.rtsp.client import RtspConnection
from collector.rtsp.redirects import Redirected
from collector.rtsp.rtcp import ReceiverReports
from collector.rtsp.sdp import Media, SessionDescription, join_control, parse_sdp
from collector.rtsp.tracks import Track, supported
from collector.rtsp.wire import Response

_INTERLEAVED = re.compile(r"interleaved=(\d+)(?:-(\d+))?")
_SSRC = re.compile(r"(?:^|;)\s*ssrc=([0-9A-Fa-f]{1,8})\s*(?:;|$)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Skipped:
    """An SDP media that is not set up, and why."""

    position: int  # in the SDP's media
    media: Media
    reason: str

    @property
    def stream(self) -> str:
        return f"{self.media.kind}/{self.media.encoding or self.media.payload_type}"


@dataclass(slots=True)
class Session:
    url: str  # aggregate control URL (PLAY, keep-alive, TEARDOWN)
    tracks: list[Track]
    skipped: list[Skipped] = field(default_factory=list)  # media of the SDP not set up
    rtp_channels: dict[int, Track] = field(default_factory=dict)
    rtcp_channels: dict[int, Track] = field(default_factory=dict)
    keepalive_method: str = "OPTIONS"
    keepalive_now: bool = False  # a keep-alive met a stale Digest nonce: send it again at once
    renewals: int = 0  # such resends since the last 2xx keep-alive answer
    rtcp_packets: int = 0
    reports: ReceiverReports = field(default_factory=ReceiverReports)  # the RTCP we send


def choose_tracks(sdp: SessionDescription, base: str) -> tuple[list[Track], list[Skipped]]:
    """The media we record, in SDP order, and those we leave out; a session without a supported
    video is refused."""
    tracks: list[Track] = []
    skipped: list[Skipped] = []
    for position, media in enumerate(sdp.media):
        if not supported(media):
            skipped.append(Skipped(position=position, media=media, reason="codec not supported"))
            continue
        track = Track.create(len(tracks), media, join_control(base, media.control))
        if media.kind == "audio":
            try:
                track.info()  # its template: what the muxers take, from the SDP alone
            except UnsupportedSource as exc:
                skipped.append(Skipped(position=position, media=media, reason=str(exc)))
                continue
        tracks.append(track)
    if not any(t.media.kind == "video" for t in tracks):
        found = ", ".join(f"{m.kind}/{m.encoding or m.payload_type}" for m in sdp.media) or "none"
        raise UnsupportedSource(f"no supported video stream (SDP offers {found})",
                                reason="no_video")
    return tracks, skipped


def content_base(response: Response, request_url: str) -> str:
    return (response.headers.get("content-base") or response.headers.get("content-location")
            or request_url)


def interleaved_channels(transport: str, asked: int) -> tuple[int, int]:
    """The RTP and RTCP channels the server chose in its Transport header (RFC 2326 12.39)."""
    match = _INTERLEAVED.search(transport)
    if match is None:
        return asked, asked + 1
    rtp = int(match[1])
    return rtp, int(match[2]) if match[2] else rtp + 1


def transport_ssrc(transport: str) -> int | None:
    """The SSRC the server announced for a track (Transport `ssrc=`, 8 hex digits)."""
    match = _SSRC.search(transport)
    return int(match[1], 16) if match else None


def apply_rtp_info(value: str, tracks: list[Track]) -> None:
    """Take each track's starting `rtptime` from a PLAY response's RTP-Info header."""
    for entry in value.split(","):
        params = dict(
            (k.strip().lower(), v.strip())
            for k, _, v in (p.partition("=") for p in entry.split(";"))
        )
        url, rtptime = params.get("url", ""), ascii_int(params.get("rtptime", ""))
        if not url or rtptime is None:
            continue
        for track in tracks:
            if url == track.url or track.url.endswith(url) or url.endswith(track.url):
                track.set_origin(rtptime)
                break


Bounded = Callable[[Awaitable[Response]], Awaitable[Response]]


async def start_session(conn: RtspConnection, url: str, bounded: Bounded) -> Session:
    """DESCRIBE, SETUP every track, PLAY; `bounded` wraps each request in the caller's timeout."""
    try:
        options = await bounded(conn.request("OPTIONS", url))
        public = options.headers.get("public", "").upper()
    except SourceError as exc:
        if exc.reason == "unauthorized" or (isinstance(exc, Redirected) and exc.followable):
            raise
        public = ""  # some cameras refuse OPTIONS and play fine: DESCRIBE will tell
    described = await bounded(conn.request("DESCRIBE", url, {"Accept": "application/sdp"}))
    base = content_base(described, url)
    sdp = parse_sdp(described.body.decode("utf-8", "replace"))
    tracks, skipped = choose_tracks(sdp, base)
    session = Session(join_control(base, sdp.control), tracks, skipped)
    if "GET_PARAMETER" in public:
        session.keepalive_method = "GET_PARAMETER"
    for i, track in enumerate(tracks):
        asked = 2 * i
        transport = f"RTP/AVP/TCP;unicast;interleaved={asked}-{asked + 1}"
        reply = await bounded(conn.request("SETUP", track.url, {"Transport": transport}))
        transport = reply.headers.get("transport", "")
        rtp, rtcp = interleaved_channels(transport, asked)
        session.rtp_channels[rtp] = track
        session.rtcp_channels[rtcp] = track
        session.reports.expect(rtcp, transport_ssrc(transport))
    played = await bounded(conn.request("PLAY", session.url))
    apply_rtp_info(played.headers.get("rtp-info", ""), tracks)
    return session
