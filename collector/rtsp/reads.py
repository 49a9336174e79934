"""One read of a playing session, from bytes to media packets: the per-read hot loop.

`route()` walks the framer's buffer itself: each `$`-frame on a track's RTP channel goes to its
track, RTCP to the session's reports, and what is not interleaved (responses to keep-alives, a
server's requests) back to the caller as events. It is the only code that runs for every RTP
packet, a few hundred a second per camera, so it avoids what the general path pays per packet
(an event tuple, a slice of the packet, five calls).

About two thirds of a video's packets are the middles of fragmented NAL units (H.264 FU-A, H.265
FU: one 1.4 KB piece of a frame each; 3572 of 5466 in a captured 720p 2 Mbit/s session). Such a
packet is appended to the unit in progress right here when nothing about it needs the general path:
the next sequence number, the same RTP timestamp, no marker, no padding or extension, and a
fragment already started. Any other packet goes through `Track.push_rtp`, which would have done the
same with these; the fast path changes the cost, never the result (tests/rtsp/test_reads.py feeds
the same bytes through both).
"""

from __future__ import annotations

from typing import NamedTuple

from collector.media.packets import MediaPacket
from collector.rtsp.h264 import FU_A, H264Depacketizer
from collector.rtsp.h265 import FU, H265Depacketizer
from collector.rtsp.nal_units import MAX_ACCESS_UNIT_BYTES, NalDepacketizer
from collector.rtsp.rtp import SEQUENCE_AND_TIMESTAMP, RtpTrack, parse_sender_report, rtcp_has_bye
from collector.rtsp.session import Session
from collector.rtsp.tracks import Track
from collector.rtsp.wire import Event, Framer, Interleaved


class Routed(NamedTuple):
    events: list[Event]  # responses and requests, in order
    media: bool  # did the read hold RTP
    bye: bool  # did the video's sender leave (RTCP BYE)


class _Fragments(NamedTuple):
    """How a video track's fragment middles look: the second RTP header byte (no marker, the
    payload type), and where in the payload the fragment header and the fragment start."""

    rtp: RtpTrack
    depacketizer: NalDepacketizer
    header_byte: int
    type_shift: int  # the payload's NAL type is (payload[0] >> type_shift) & type_mask
    type_mask: int
    fragment_type: int
    fu_header: int  # offset of the FU header (start and end bits) in the payload


def fragment_paths(session: Session) -> dict[int, _Fragments]:
    """The fast path of each NAL-unit video track, by RTP channel."""
    paths = {}
    for channel, track in session.rtp_channels.items():
        dep, pt = track.depacketizer, track.media.payload_type
        if isinstance(dep, H264Depacketizer):
            paths[channel] = _Fragments(track.rtp, dep, pt, 0, 0x1F, FU_A, 1)
        elif isinstance(dep, H265Depacketizer):
            paths[channel] = _Fragments(track.rtp, dep, pt, 1, 0x3F, FU, 2)
    return paths


def route(framer: Framer, session: Session, paths: dict[int, _Fragments], early: list[Event],
          batch: list[MediaPacket], now: float) -> Routed:
    """Route `early` (events kept from before PLAY), then everything complete in `framer`;
    media packets are appended to `batch`. `paths` is the session's `fragment_paths()`."""
    events: list[Event] = []
    media = bye = False
    for event in early:
        if type(event) is Interleaved:
            got_media, got_bye = interleaved(session, event.channel, event.payload, batch, now)
            media, bye = media or got_media, bye or got_bye
        else:
            events.append(event)
    rtp_channels = session.rtp_channels
    unpack = SEQUENCE_AND_TIMESTAMP.unpack_from
    buf, pos = framer._buf, framer._pos
    size = len(buf)
    view = memoryview(buf)  # fragments are copied out of it without a slice of their own
    while pos < size:
        if buf[pos] != 0x24:  # not '$': an RTSP message, or junk
            framer._pos = pos
            event = framer.next_event()
            pos = framer._pos
            if event is None:
                break
            if type(event) is Interleaved:
                got_media, got_bye = interleaved(session, event.channel, event.payload, batch, now)
                media, bye = media or got_media, bye or got_bye
            else:
                events.append(event)
            continue
        end = pos + 4
        if end > size:
            break
        end += (buf[pos + 2] << 8) | buf[pos + 3]
        if end > size:
            break
        channel = buf[pos + 1]
        path = paths.get(channel)
        if path is not None and buf[pos + 4] == 0x80 and buf[pos + 5] == path.header_byte:
            # An RTP header of 12 bytes without marker; the payload starts at pos + 16.
            rtp, dep = path.rtp, path.depacketizer
            fu = dep._fu
            header = pos + 16 + path.fu_header
            if fu is not None and header < end - 1:
                sequence, timestamp = unpack(buf, pos + 6)
                if (sequence == rtp._next_seq and timestamp == rtp._last_ts
                        and (buf[pos + 16] >> path.type_shift) & path.type_mask
                        == path.fragment_type
                        and not buf[header] & 0xC0  # neither the first nor the last fragment
                        and len(fu) < MAX_ACCESS_UNIT_BYTES):
                    fu += view[header + 1 : end]
                    rtp._next_seq = (sequence + 1) & 0xFFFF
                    rtp.received += 1
                    media = True
                    pos = end
                    continue
        track = rtp_channels.get(channel)
        if track is not None:
            if track.push_rtp(buf[pos + 4 : end], batch):
                media = True
        elif channel in session.rtcp_channels:
            bye = rtcp(session, channel, buf[pos + 4 : end], now) or bye
        pos = end
    framer._pos = pos
    return Routed(events, media, bye)


def interleaved(session: Session, channel: int, payload: bytes, batch: list[MediaPacket],
                now: float) -> tuple[bool, bool]:
    """One interleaved packet by the general path: (was it RTP, was it the video's BYE)."""
    track: Track | None = session.rtp_channels.get(channel)
    if track is not None:
        return track.push_rtp(payload, batch), False
    if channel in session.rtcp_channels:
        return False, rtcp(session, channel, payload, now)
    return False, False


def rtcp(session: Session, channel: int, payload: bytes, now: float) -> bool:
    """Note an RTCP packet for our reports and its track's first sender report; True when it
    is the video's sender saying BYE."""
    owner = session.rtcp_channels[channel]
    session.rtcp_packets += 1
    session.reports.note_rtcp(channel, payload, now)
    if owner.sender_report is None:
        owner.sender_report = parse_sender_report(payload)
    return owner.media.kind == "video" and rtcp_has_bye(payload)
