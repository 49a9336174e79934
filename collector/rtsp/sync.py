"""Lining a session's tracks up on the sender's wallclock (RTCP sender reports, RFC 3550 6.4.1).

Each track's RTP clock starts at a random value; RTP-Info says where each one was at the start of
PLAY, but not every server gets that right (GStreamer's shared media is 0.7 s off) and some leave it
out. A sender report maps a track's RTP time to the sender's wallclock, which is what players use
for lip sync, so once every track has one we move each other track's zero to the instant of the
reference (first video) track's zero. Packets already handed out keep their timestamps: a track
moved forward gets a gap, a track moved back drops what it would repeat (`Track._packet`). Nothing
waits for the reports, so a camera's first packets are never held. Pure functions.
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.rtsp.tracks import Track


def ready_to_sync(tracks: Sequence[Track]) -> bool:
    """Has every track sent media and a sender report?"""
    return all(t.sender_report is not None and t.rtp.received for t in tracks)


def sync_origins(tracks: Sequence[Track]) -> dict[int, int]:
    """Move every track's origin to the reference track's first instant; return how far each
    moved track's timestamps move (positive: later), keyed by stream index."""
    reference = next((t for t in tracks if t.media.kind == "video"), tracks[0])
    if reference.origin is None:
        return {}
    instant = reference.wallclock_of(reference.origin)
    if instant is None:
        return {}
    shifts = {}
    for track in tracks:
        if track is reference or track.origin is None:
            continue
        origin = track.timestamp_at(instant)
        if origin is not None and origin != track.origin:
            shifts[track.index] = track.origin - origin
            track.origin = origin
    return shifts

