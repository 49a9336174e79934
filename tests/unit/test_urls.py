"""URL policy and redaction."""

from __future__ import annotations

import pytest

from collector.errors import RequestError
from collector.media.pyav_source import ffmpeg_options
from collector.urls import check_source_url, redact


def test_redact_every_url_in_text():
    text = "a rtsp://u:p@h/x and http://user:pw%40x@host:8/y, rtmp://h/z"
    assert redact(text) == "a rtsp://***@h/x and http://***@host:8/y, rtmp://h/z"


@pytest.mark.parametrize(
    ("text", "shown"),
    [("rtsp://admin:p@ss@w0rd@10.0.0.5:554/s", "rtsp://***@10.0.0.5:554/s"),  # up to the last @
     ("rtsp://admin:p@ss@10.0.0.5", "rtsp://***@10.0.0.5"),
     ("failed: rtsp://a:b#c@h/x (refused)", "failed: rtsp://***@h/x (refused)"),
     ("http://h/v.cgi?user=a@b", "http://h/v.cgi?user=a@b"),  # an '@' past the host is not hidden
     ("rtsp://h:554 admin@x", "rtsp://h:554 admin@x"),
     # an unencoded '/' in a password that starts with digits: read as a port and a path
     ("rtsp://admin:1234/x@10.0.0.5/s", "rtsp://***@10.0.0.5/s"),
     ("rtsp://admin:12/3/4@10.0.0.5:554/s", "rtsp://***@10.0.0.5:554/s"),
     ("rtsp://admin:1234/pa@ss@10.0.0.5/s1 and more", "rtsp://***@10.0.0.5/s1 and more"),
     ("rtsp://u:p@h:554/a@b", "rtsp://***@h:554/a@b"),
     ("https://xxx-lh.akamaihd.net/i/stream_1@123456/m.m3u8",
      "https://xxx-lh.akamaihd.net/i/stream_1@123456/m.m3u8")],
)
def test_redact_hides_everything_before_the_host(text, shown):
    assert redact(text) == shown


def test_a_password_with_at_signs_is_accepted_as_parsers_read_it():
    """urllib (and FFmpeg) take the last '@' as the end of the user information."""
    assert check_source_url("rtsp://admin:p@ss@10.0.0.5/s", "f") == "rtsp://admin:p@ss@10.0.0.5/s"
    assert check_source_url("http://h/v.cgi?pwd=p@ss", "f") == "http://h/v.cgi?pwd=p@ss"


@pytest.mark.parametrize("url", [
    "https://xxx-lh.akamaihd.net/i/stream_1@123456/master.m3u8",  # CDN stream names
    "rtmp://cp12345.live.edgefcs.net/live/streamname@12345",
    "rtsp://10.0.0.5/cam@main",
    "https://u:p@host/i/s@1/x.m3u8",
])
def test_an_at_sign_in_the_path_is_legal(url):
    assert check_source_url(url, "f") == url


def test_a_url_utf8_cannot_encode_is_refused():
    """The config file's cameras come here too, not only the API's JSON bodies."""
    with pytest.raises(RequestError) as info:
        check_source_url("rtsp://h/\ud800", "f")
    assert "lone surrogate" in info.value.as_json()["error"]


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "/etc/passwd", "concat:a|b", "subfile:x", "pipe:0", "data:,x"]
)
def test_local_and_odd_schemes_refused(url):
    with pytest.raises(RequestError) as info:
        check_source_url(url, "f")
    assert info.value.field == "f"


@pytest.mark.parametrize("url", ["rtsp://h/a", "rtsps://h/a", "http://h/a", "https://h/a.m3u8",
                                 "rtmp://h/a", "rtmps://h/a"])
def test_allowed_schemes(url):
    assert check_source_url(url, "f") == url


def test_ffmpeg_options_always_whitelist_and_timeouts():
    """protocol_whitelist is always ours, even if options try to set it; each scheme gets the
    socket timeout FFmpeg honours for it."""
    rtsp = ffmpeg_options("rtsp://h/x", {"protocol_whitelist": "file"}, 5)
    assert rtsp["protocol_whitelist"] == "rtsp,rtp,srtp,udp,tcp"
    assert rtsp["timeout"] == "5000000" and rtsp["rtsp_transport"] == "tcp"
    http = ffmpeg_options("http://h/x.m3u8", {}, 2.5)
    assert "file" not in http["protocol_whitelist"] and http["rw_timeout"] == "2500000"


@pytest.mark.parametrize(
    ("url", "ok"),
    [("rtsp://127.0.0.1/x", True), ("rtsp://10.1.2.3/x", True), ("rtsp://10.9.0.1/x", False),
     ("rtsp://cam.example.org/x", True), ("rtsp://evil.org/x", False),
     ("rtsp://a.cams.local/x", True), ("rtsp://cams.local.evil/x", False),
     ("rtsp://169.254.169.254/latest", False), ("demo://testsrc", True)],
)
def test_host_allowlist(url, ok):
    from collector.urls import check_host_allowed

    allowed = "127.0.0.1, 10.1.0.0/16, cam.example.org, *.cams.local"
    if ok:
        check_host_allowed(url, "f", allowed)
    else:
        with pytest.raises(RequestError, match="not in the allowed hosts"):
            check_host_allowed(url, "f", allowed)
