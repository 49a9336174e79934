"""RTSP framing, SDP, authentication and RTP headers: the I/O-free protocol pieces."""

from __future__ import annotations

import hashlib

import pytest

from collector.rtsp.auth import Authorizer, parse_challenge, split_userinfo
from collector.rtsp.rtp import RtpError, parse_rtp, rtcp_has_bye
from collector.rtsp.sdp import join_control, parse_sdp
from collector.rtsp.session import apply_rtp_info, choose_tracks, interleaved_channels
from collector.rtsp.wire import Framer, Interleaved, ProtocolError, Request, Response
from tests.rtsp.packets import rtp

SDP = """v=0\r
o=- 1 1 IN IP4 127.0.0.1\r
s=Session\r
t=0 0\r
a=control:*\r
m=video 0 RTP/AVP 96\r
a=rtpmap:96 H264/90000\r
a=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z01ADdoFB+wEQAAAAwBAAAAMo8UKqA==,aO8PyA==\r
a=control:stream=0\r
m=audio 0 RTP/AVP 97\r
a=rtpmap:97 MPEG4-GENERIC/48000/1\r
a=fmtp:97 streamtype=5;mode=AAC-hbr;config=1188;sizelength=13;indexlength=3;indexdeltalength=3\r
a=control:stream=1\r
m=application 0 RTP/AVP 107\r
a=rtpmap:107 vnd.onvif.metadata/90000\r
"""


def test_framer_splits_responses_and_interleaved_frames_across_reads():
    """Messages and $-frames arrive cut anywhere by TCP; each comes out whole, in order."""
    wire = (b"RTSP/1.0 200 OK\r\nCSeq: 3\r\nContent-Length: 4\r\n\r\nbody"
            + b"$\x00\x00\x03abc" + b"$\x01\x00\x00"
            + b"RTSP/1.0 401 Unauthorized\r\nCSeq: 4\r\nWWW-Authenticate: Basic realm=\"x\"\r\n"
              b"WWW-Authenticate: Digest realm=\"x\", nonce=\"n\"\r\n\r\n")
    framer, events = Framer(), []
    for i in range(len(wire)):  # one byte at a time: the worst case
        framer.feed(wire[i : i + 1])
        while (event := framer.next_event()) is not None:
            events.append(event)
    assert events[0] == Response(200, "OK", {"cseq": "3", "content-length": "4"}, b"body")
    assert events[1:3] == [Interleaved(0, b"abc"), Interleaved(1, b"")]
    assert isinstance(events[3], Response) and events[3].status == 401
    assert events[3].auth_challenges == ('Basic realm="x"', 'Digest realm="x", nonce="n"')


def test_framer_skips_garbage_and_counts_it():
    """Junk between frames is skipped up to the next frame, never taken for one."""
    framer = Framer()
    framer.feed(b"\x17garbage!!" + b"$\x00\x00\x02hi")
    assert framer.next_event() == Interleaved(0, b"hi")
    assert framer.skipped_bytes == 10


def test_framer_reads_server_requests():
    """A server's own request (cameras ping clients) is framed, not skipped as junk."""
    framer = Framer()
    framer.feed(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n")
    assert framer.next_event() == Request("OPTIONS", "*", {"cseq": "1"})


def test_framer_refuses_absurd_content_length():
    """A Content-Length beyond 1 MiB is a protocol error, not a 1 GB buffer."""
    framer = Framer()
    framer.feed(b"RTSP/1.0 200 OK\r\nContent-Length: 999999999\r\n\r\n")
    with pytest.raises(ProtocolError):
        framer.next_event()


def test_sdp_tracks_controls_and_formats():
    """Video H.264 and AAC are chosen (ONVIF metadata is not, and says why), with their control
    URLs."""
    sdp = parse_sdp(SDP)
    assert [m.encoding for m in sdp.media] == ["H264", "MPEG4-GENERIC", "VND.ONVIF.METADATA"]
    tracks, skipped = choose_tracks(sdp, "rtsp://cam/live/")
    assert [t.url for t in tracks] == ["rtsp://cam/live/stream=0", "rtsp://cam/live/stream=1"]
    assert [(s.position, s.stream, s.reason) for s in skipped] == [
        (2, "application/VND.ONVIF.METADATA", "codec not supported")]
    assert tracks[1].media.clock_rate == 48000 and tracks[1].media.fmtp["config"] == "1188"
    assert join_control("rtsp://cam/a", "rtsp://other/b") == "rtsp://other/b"
    assert join_control("rtsp://cam/a", "*") == "rtsp://cam/a"


def test_rtp_info_sets_each_tracks_origin():
    """RTP-Info's rtptime is each track's zero, so audio and video line up; the server's
    Transport header decides the interleaved channels."""
    tracks, _ = choose_tracks(parse_sdp(SDP), "rtsp://cam/live")
    apply_rtp_info("url=rtsp://cam/live/stream=0;seq=1;rtptime=1000, "
                   "url=rtsp://cam/live/stream=1;seq=9;rtptime=2000", tracks)
    assert [t.origin for t in tracks] == [1000, 2000]
    assert interleaved_channels("RTP/AVP/TCP;unicast;interleaved=4-5;ssrc=1", 0) == (4, 5)
    assert interleaved_channels("RTP/AVP/TCP;unicast", 2) == (2, 3)


def test_digest_response_matches_rfc_2617():
    """The RFC 2617 section 3.5 example, answered with qop=auth."""
    auth = Authorizer("Mufasa", "Circle Of Life")
    auth._cnonce = "0a4f113b"
    assert auth.choose(('Basic realm="x"',
                        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
                        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
                        'opaque="5ccc069c403ebaf9f0171e9517f40e41"'))
    header = auth.header("GET", "/dir/index.html")
    assert header is not None and 'response="6629fae49393a05397450978507c4ef1"' in header
    assert "nc=00000001" in header and 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header


def test_digest_without_qop_and_basic():
    """Digest without qop (RFC 2069 form) and Basic are answered correctly; quoted challenge
    values with escapes are parsed."""
    auth = Authorizer("u", "p")
    auth.choose(('Digest realm="r", nonce="n"',))
    ha1 = hashlib.md5(b"u:r:p").hexdigest()
    ha2 = hashlib.md5(b"DESCRIBE:rtsp://h/x").hexdigest()
    expected = hashlib.md5(f"{ha1}:n:{ha2}".encode()).hexdigest()
    assert f'response="{expected}"' in (auth.header("DESCRIBE", "rtsp://h/x") or "")
    basic = Authorizer("u", "p")
    basic.choose(('Basic realm="r"',))
    assert basic.header("PLAY", "x") == "Basic dTpw"
    assert parse_challenge('Digest realm="a \\"b\\"", nonce=x').params == {"realm": 'a "b"',
                                                                          "nonce": "x"}


def test_userinfo_is_split_off_and_decoded():
    """Credentials never go on the wire inside the URL; percent-escapes are decoded."""
    assert split_userinfo("rtsp://us%40er:p%3Ass@cam:8554/x?y=1") == (
        "rtsp://cam:8554/x?y=1", "us@er", "p:ss")
    assert split_userinfo("rtsp://cam/x") == ("rtsp://cam/x", None, None)


def test_rtp_header_parsing():
    """CSRCs, header extensions and padding are skipped; version 1 is refused."""
    pkt = parse_rtp(rtp(5, 77, b"data", marker=True))
    assert (pkt.sequence, pkt.timestamp, pkt.marker, pkt.payload_type, pkt.payload) == (
        5, 77, True, 96, b"data")
    raw = bytearray(rtp(5, 77, b"data" + b"\x00\x00\x03"))
    raw[0] |= 0x20 | 0x10 | 0x01  # padding, extension, one CSRC
    raw[12:12] = b"\x00\x00\x00\x01" + b"\xbe\xde\x00\x01" + b"\x01\x02\x03\x04"
    assert parse_rtp(bytes(raw)).payload == b"data"
    with pytest.raises(RtpError):
        parse_rtp(b"\x40" + bytes(11))
    bye = bytes([0x81, 203, 0, 1]) + bytes(4)
    receiver_report = bytes([0x80, 201, 0, 1]) + bytes(4)
    assert rtcp_has_bye(receiver_report + bye) and not rtcp_has_bye(receiver_report)


@pytest.mark.parametrize("status", ["²00", "2000", "", "20O"])
def test_framer_refuses_a_status_that_is_not_three_ascii_digits(status):
    """'²00' passes `str.isdigit()` and makes `int()` raise: a protocol error, which ends the
    session as a failure, not a ValueError that ended the process (until 2026-11-27)."""
    framer = Framer()
    framer.feed(f"RTSP/1.0 {status} OK\r\nCSeq: 1\r\n\r\n".encode())
    with pytest.raises(ProtocolError, match="bad status line"):
        framer.next_event()


def test_numbers_that_are_not_ascii_digits_are_ignored():
    """CSeq, SDP formats, RTP-Info's rtptime and AAC's fmtp numbers: '²' and overlong digit
    strings count as absent, as any other non-number does."""
    from collector.rtsp.aac import AacConfig

    framer = Framer()
    framer.feed("RTSP/1.0 200 OK\r\nCSeq: ²\r\n\r\n".encode())
    assert framer.next_event().cseq is None
    framer.feed(b"RTSP/1.0 200 OK\r\nCSeq: " + b"1" * 5000 + b"\r\n\r\n")
    assert framer.next_event().cseq is None
    sdp = parse_sdp(SDP.replace("m=video 0 RTP/AVP 96", "m=video 0 RTP/AVP ²6 96"))
    assert sdp.media[0].payload_type == 96
    tracks, _ = choose_tracks(parse_sdp(SDP), "rtsp://cam/live")
    apply_rtp_info("url=rtsp://cam/live/stream=0;rtptime=²000, "
                   "url=rtsp://cam/live/stream=1;rtptime=2000", tracks)
    assert [t.origin for t in tracks] == [None, 2000]
    config = AacConfig.from_fmtp({"config": "1188", "sizelength": "¹3", "indexlength": "3"})
    assert config.size_length == 13  # the default
