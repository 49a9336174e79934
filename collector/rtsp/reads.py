"""One read of a playing session, from bytes to media packets: the per-read hot loop.

`route()` walks the framer's buffer itself: each `$`-frame on a track's RTP channel goes to its
track, RTCP to the session's reports, and what is not interleaved (responses to keep-alives, a
server's requests) back to the caller as events. It is the only code that runs for every RTP
packet, a few hundred a second per camera, so it avoids what the general path pays per packet
(an event tuple, a slice of the packet, five calls).

Most packets take a shortcut here that does what `Track.push_rtp` would, without its calls and
slices, whenever nothing about the packet needs the general path (the next sequence number, a
12-byte header without padding or extension, the track's payload type):

- Fragments of NAL units (H.264 FU-A, H.265 FU), nearly all of a video's packets (30 s of a captured
  720p 2 Mbit/s session from GStreamer: per frame an access unit delimiter, then a first fragment,
  ~6 middles and a last one; 5785 of its 6583 video packets were fragments). A first one starts the
  NAL unit, a middle adds to it, a last one finishes it (and the access unit, when marked). Pieces
  are kept as memoryview slices of the read and joined once, when the NAL unit is whole.
- The first packet of a unit when it holds one whole NAL unit and the unit before it is finished:
  GStreamer's access unit delimiter, one a frame (its new RTP time kept it off the fragments'
  shortcut, and the general path made a read 6-9 % dearer: bench/route_reads.py).
- AAC packets of one whole frame behind one 13+3-bit AU header, the usual RFC 3640 packet.

Any other packet goes through `Track.push_rtp`, which would have done the same with these; the
shortcuts change the cost, never the result (tests/rtsp/test_reads.py feeds the same bytes
through both, reads cut anywhere).
"""

from __future__ import annotations

from typing import NamedTuple

from collector.media.packets import MediaPacket
from collector.rtsp.aac import AacDepacketizer
from collector.rtsp.h264 import FU_A, H264Depacketizer
from collector.rtsp.h265 import FU, H265Depacketizer
from collector.rtsp.nal_units import MAX_ACCESS_UNIT_BYTES, NalDepacketizer
from collector.rtsp.rtp import (
    SEQUENCE_AND_TIMESTAMP,
    AccessUnit,
    RtpTrack,
    parse_sender_report,
    rtcp_has_bye,
)
from collector.rtsp.session import Session
from collector.rtsp.tracks import Track
from collector.rtsp.wire import Event, Framer, Interleaved


class Routed(NamedTuple):
    events: list[Event]  # responses and requests, in order
    media: bool  # did the read hold RTP
    bye: bool  # did the video's sender leave (RTCP BYE)


class _Fragments(NamedTuple):
    """A video track's fragments: its channel, the payload type, and where in the payload the
    fragment header and the fragment start."""

    channel: int
    track: Track
    rtp: RtpTrack
    depacketizer: NalDepacketizer
    payload_type: int
    type_shift: int  # the payload's NAL type is (payload[0] >> type_shift) & type_mask
    type_mask: int
    fragment_type: int
    fu_header: int  # offset of the FU header (start and end bits) in the payload
    # the depacketizer's SINGLE_LOW, SINGLE_HIGH, MIN_PAYLOAD: a payload of one whole NAL unit
    single_low: int
    single_high: int
    min_payload: int


def _video(channel: int, track: Track, fragment_type: int, fu_header: int) -> _Fragments:
    dep = track.depacketizer
    assert isinstance(dep, NalDepacketizer)
    return _Fragments(channel, track, track.rtp, dep, track.media.payload_type, dep.KIND_SHIFT,
                      dep.KIND_MASK, fragment_type, fu_header, dep.SINGLE_LOW, dep.SINGLE_HIGH,
                      dep.MIN_PAYLOAD)


class _AacFrames(NamedTuple):
    """An AAC track whose packets usually hold one whole frame behind one 16-bit AU header."""

    channel: int
    track: Track
    rtp: RtpTrack
    depacketizer: AacDepacketizer
    marked: int  # the second RTP header byte of such a packet: marker and payload type


class Shortcuts(NamedTuple):
    """The tracks `route()` takes by its shortcuts: the session's first NAL-unit video track and
    its first usual AAC track (None: that kind, and any other track, goes the general way)."""

    video: _Fragments | None
    aac: _AacFrames | None


NO_SHORTCUTS = Shortcuts(None, None)


def shortcuts(session: Session) -> Shortcuts:
    video: _Fragments | None = None
    aac: _AacFrames | None = None
    for channel, track in session.rtp_channels.items():
        dep, pt = track.depacketizer, track.media.payload_type
        if type(track) is not Track:  # G.711 (SampleTrack) takes the general path
            continue
        if video is None and isinstance(dep, H264Depacketizer):
            video = _video(channel, track, FU_A, 1)
        elif video is None and isinstance(dep, H265Depacketizer):
            video = _video(channel, track, FU, 2)
        elif (aac is None and isinstance(dep, AacDepacketizer)
              and dep.config.size_length == 13 and dep.config.index_length == 3):
            aac = _AacFrames(channel, track, track.rtp, dep, 0x80 | pt)
    return Shortcuts(video, aac)


def route(framer: Framer, session: Session, paths: Shortcuts, early: list[Event],
          batch: list[MediaPacket], now: float) -> Routed:
    """Route `early` (events kept from before PLAY), then everything complete in `framer`;
    media packets are appended to `batch`. `paths` is the session's `shortcuts()`."""
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
    most = MAX_ACCESS_UNIT_BYTES
    # The shortcuts' fields in locals: the loop below runs per packet.
    v_channel = a_channel = -1
    if paths.video is not None:
        (v_channel, v_track, v_rtp, v_dep, v_pt, v_shift, v_mask, v_type,
         fu_header, v_low, v_high, v_min) = paths.video
        v_header = 16 + fu_header  # the FU header's offset from the '$'
    if paths.aac is not None:
        a_channel, a_track, a_rtp, a_dep, a_marked = paths.aac
    buf, pos = framer._buf, framer._pos
    size = len(buf)
    view = memoryview(buf)  # fragments are copied out of it without a slice of their own
    while pos < size:
        if buf[pos] != 0x24:  # not '$': an RTSP message, or junk
            framer._pos = pos
            message = framer.next_event()
            pos = framer._pos
            if message is None:
                break
            if type(message) is Interleaved:
                got_media, got_bye = interleaved(session, message.channel, message.payload, batch,
                                                 now)
                media, bye = media or got_media, bye or got_bye
            else:
                events.append(message)
            continue
        end = pos + 4
        if end > size:
            break
        end += (buf[pos + 2] << 8) | buf[pos + 3]
        if end > size:
            break
        channel = buf[pos + 1]
        # Each shortcut below does what `Track.push_rtp` would, for a 12-byte RTP header (no
        # padding, extension or CSRCs: the payload is at pos + 16) of the next sequence number
        # only; anything else goes the general way.
        if channel == v_channel and buf[pos + 4] == 0x80 and end > pos + 16:
            sequence, timestamp = unpack(buf, pos + 6)
            b1 = buf[pos + 5]
            header = pos + v_header
            if (end > pos + 20 and sequence == v_rtp._next_seq and timestamp == v_rtp._last_ts
                    and b1 & 0x7F == v_pt and header < end - 1
                    and (buf[pos + 16] >> v_shift) & v_mask == v_type):
                fu = v_dep._fu
                bits = buf[header] & 0xC0
                taken = True
                if fu is None:
                    if bits == 0x80 and b1 < 0x80:  # a first fragment, unmarked
                        first = _nal_header(buf, pos + 16, header)
                        grown = len(first) + end - header - 1
                        taken = grown <= most
                        if taken:
                            v_dep._fu, v_dep._fu_size = [first, view[header + 1 : end]], grown
                    else:
                        taken = False
                elif bits == 0 and b1 < 0x80:  # a middle
                    grown = v_dep._fu_size + end - header - 1
                    taken = grown <= most
                    if taken:
                        fu.append(view[header + 1 : end])
                        v_dep._fu_size = grown
                elif bits == 0x40 and v_dep._fu_size + end - header - 1 <= most:
                    fu.append(view[header + 1 : end])  # the last fragment: the NAL is whole
                    v_dep._fu = None
                    v_dep._add(b"".join(fu))
                    if b1 >= 0x80:  # and the unit
                        units: list[AccessUnit] = []
                        v_dep._finish(units)
                        for unit in units:
                            v_track._emit(unit, batch)
                else:
                    taken = False
                if taken:
                    v_rtp._next_seq = (sequence + 1) & 0xFFFF
                    v_rtp.received += 1
                    media = True
                    pos = end
                    continue
            elif (b1 == v_pt and sequence == v_rtp._next_seq  # unmarked, nothing lost
                  and v_low <= (buf[pos + 16] >> v_shift) & v_mask <= v_high
                  and end - pos - 16 >= v_min
                  and not v_dep._nals and v_dep._fu is None and not v_dep._damaged
                  and (last := v_rtp._last_ts) is not None  # (then the track has started)
                  and 0 < (timestamp - last) & 0xFFFFFFFF < 0x80000000):
                # The first packet of the next unit, one whole NAL unit, after a finished
                # unit: GStreamer starts every frame so, with an access unit delimiter.
                v_rtp._next_seq = (sequence + 1) & 0xFFFF
                v_rtp.received += 1
                v_rtp._ext_ts += (timestamp - last) & 0xFFFFFFFF
                v_rtp._last_ts = timestamp
                v_dep._ts = v_rtp._ext_ts
                v_dep._add(buf[pos + 16 : end])
                media = True
                pos = end
                continue
        elif (channel == a_channel and buf[pos + 4] == 0x80 and end > pos + 20
              and buf[pos + 5] == a_marked and buf[pos + 16] == 0 and buf[pos + 17] == 16
              and (buf[pos + 18] << 5) | (buf[pos + 19] >> 3) == end - pos - 20):
            # AAC: one whole frame, marked, behind one AU header of 13 + 3 bits
            sequence, timestamp = unpack(buf, pos + 6)
            last = a_rtp._last_ts
            if (sequence == a_rtp._next_seq and a_dep._fragment is None
                    and a_dep._skip_ts is None and last is not None
                    and a_track._first is not None
                    and (timestamp - last) & 0xFFFFFFFF < 0x80000000):
                a_rtp._next_seq = (sequence + 1) & 0xFFFF
                a_rtp.received += 1
                a_rtp._ext_ts += (timestamp - last) & 0xFFFFFFFF
                a_rtp._last_ts = timestamp
                a_track._emit(AccessUnit(a_rtp._ext_ts, buf[pos + 20 : end], True), batch)
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


def _nal_header(buf: bytes, payload: int, fu_header: int) -> bytes:
    """The header of the NAL unit a first fragment starts (H.264 FU-A: 1 byte; H.265 FU: 2)."""
    fu = buf[fu_header]
    if fu_header == payload + 1:  # H.264
        return bytes(((buf[payload] & 0xE0) | (fu & 0x1F),))
    return bytes(((buf[payload] & 0x81) | ((fu & 0x3F) << 1), buf[payload + 1]))


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
