#!/usr/bin/python3
"""Standalone RTSP test server (gst-rtsp-server 1.22) serving a real H.264 or H.265 (+ AAC) clip.

Run with the *system* python (needs python3-gi):

    /usr/bin/python3 tests/media/rtsp_server.py --clip CLIP --port 0 \
        [--path /cam1 ...] [--shared] [--auth --user U --password P [--digest]]
        [--tls-cert C --tls-key K] [--audio aac|pcmu|pcma]

Prints exactly one line ``READY <port>`` once listening, then serves until SIGTERM/SIGINT.

* non-shared (default): every client gets a fresh pipeline playing the file once
  from the start (filesrc ! demux ! parse ! pay, no re-encoding).
* ``--shared``: one pipeline per mount shared by all clients (``--one-pipeline``: one for every
  mount of this server), looping the file
  forever without re-encoding: ``ffmpeg -stream_loop -1 -c copy -f mpegts`` (which
  keeps timestamps monotonic across loops) is piped into ``fdsrc ! tsdemux``.
* The video is sent as it is in the clip, H.264 or H.265 (which ffprobe says), parameter sets
  in front of every key frame. Not H.265 with B-frames in ``--shared`` mode: there GStreamer
  (1.22) stamps each picture with the time of the one sent before it (FFmpeg's RTSP client
  sees the same), while the non-shared mode sends the clip's own times.
* RTP over UDP and TCP-interleaved are both allowed.
* ``--auth`` (implied by ``--user``): Basic auth required to play the given paths; with
  ``--digest``, Digest (MD5) instead, and the server offers only Digest.
* ``--tls-cert``/``--tls-key`` (PEM files): every connection is TLS (rtsps://).
* ``--audio pcmu|pcma``: the clip's AAC is decoded and sent as G.711 (8 kHz mono, RTP payload
  type 0 or 8) instead of as it is (``aac``, the default).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gio, GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

DEMUXERS = {".mkv": "matroskademux", ".webm": "matroskademux", ".mp4": "qtdemux",
            ".mov": "qtdemux", ".m4v": "qtdemux", ".ts": "tsdemux"}
VIDEO = {
    codec: f"d. ! queue ! {codec}parse config-interval=-1 ! "
           f"rtp{codec}pay pt=96 config-interval=-1 name=pay0"
    for codec in ("h264", "h265")
}
AUDIO = {
    "aac": "d. ! queue ! aacparse ! rtpmp4gpay pt=97 name=pay1",
    "pcmu": ("d. ! queue ! aacparse ! avdec_aac ! audioconvert ! audioresample ! "
             "audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay pt=0 name=pay1"),
    "pcma": ("d. ! queue ! aacparse ! avdec_aac ! audioconvert ! audioresample ! "
             "audio/x-raw,rate=8000,channels=1 ! alawenc ! rtppcmapay pt=8 name=pay1"),
}


def pipeline_tail(video: str, audio: str | None) -> str:
    """Payloaders for the clip's video (`VIDEO`'s key), and its audio (as `audio` says) when it
    has some."""
    return f"{VIDEO[video]} {AUDIO[audio]}" if audio else VIDEO[video]


def codec_names(clip: Path) -> dict[str, list[str]]:
    """ffprobe's codec names of the clip's streams, by kind ("video", "audio", ...)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,codec_name",
                          "-of", "json", str(clip)], capture_output=True, text=True).stdout
    names: dict[str, list[str]] = {}
    for stream in json.loads(out or "{}").get("streams", []):
        names.setdefault(stream.get("codec_type", ""), []).append(stream.get("codec_name", ""))
    return names


def video_codec(names: list[str]) -> str:
    """`VIDEO`'s key for the first of the clip's video codecs (an error for any other codec)."""
    codec = {"h264": "h264", "hevc": "h265"}.get(names[0] if names else "")
    if codec is None:
        raise SystemExit(f"no H.264 or H.265 video in the clip (ffprobe says {names})")
    return codec


class FileFactory(GstRtspServer.RTSPMediaFactory):
    """Plays the file once from the start for every (non-shared) client."""

    def __init__(self, clip: Path, tail: str) -> None:
        super().__init__()
        demux = DEMUXERS.get(clip.suffix.lower(), "matroskademux")
        self.set_launch(f'( filesrc location="{clip}" ! {demux} name=d {tail} )')


class LoopFactory(GstRtspServer.RTSPMediaFactory):
    """Loops the file forever (no re-encode) via an ffmpeg -stream_loop pipe."""

    def __init__(self, clip: Path, tail: str) -> None:
        super().__init__()
        self.clip = clip
        self.tail = tail
        self.procs: set[subprocess.Popen[bytes]] = set()

    def do_create_element(self, url: GstRtsp.RTSPUrl) -> Gst.Element:
        proc = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-re", "-stream_loop", "-1",
             "-i", str(self.clip), "-c", "copy", "-f", "mpegts", "-"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        self.procs.add(proc)
        fd = proc.stdout.fileno()
        element = Gst.parse_launch(f"( fdsrc fd={fd} ! tsdemux name=d {self.tail} )")
        element._ffmpeg = proc  # kept with the element; reaped when the media is unprepared
        return element

    def do_configure(self, media: GstRtspServer.RTSPMedia) -> None:
        GstRtspServer.RTSPMediaFactory.do_configure(self, media)
        proc = media.get_element()._ffmpeg
        media.connect("unprepared", lambda _media: self.reap(proc))

    def reap(self, proc: subprocess.Popen[bytes]) -> None:
        if proc in self.procs:
            self.procs.discard(proc)
            proc.kill()
            proc.wait()
            if proc.stdout:
                proc.stdout.close()

    def reap_all(self) -> None:
        for proc in list(self.procs):
            self.reap(proc)


class GroupFactory(LoopFactory):
    """One looping pipeline for every path it is mounted on: media are keyed by the factory, not
    by the URL, so N cameras cost the server one demux and payloader (as a benchmark wants it)."""

    def do_gen_key(self, url: GstRtsp.RTSPUrl) -> str:
        return "group"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--path", dest="paths", action="append",
                        help="mount path (repeatable), default /cam")
    parser.add_argument("--shared", action="store_true",
                        help="one looping pipeline shared by all clients")
    parser.add_argument("--one-pipeline", action="store_true",
                        help="with --shared: every path plays the same single pipeline")
    parser.add_argument("--auth", action="store_true",
                        help="require Basic auth (needs --user/--password)")
    parser.add_argument("--digest", action="store_true",
                        help="with --auth: offer and accept only Digest auth instead of Basic")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--tls-cert", help="PEM certificate chain: serve rtsps://")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--audio", choices=sorted(AUDIO), default="aac",
                        help="how the clip's audio is sent (pcmu/pcma: decoded, G.711)")
    args = parser.parse_args()
    clip: Path = args.clip.resolve()
    if not clip.is_file():
        parser.error(f"clip not found: {clip}")
    use_auth = args.auth or args.user is not None
    if use_auth and (args.user is None or args.password is None):
        parser.error("--auth needs --user and --password")
    if args.digest and not use_auth:
        parser.error("--digest needs --user and --password")

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    names = codec_names(clip)
    tail = pipeline_tail(video_codec(names.get("video", [])),
                         args.audio if names.get("audio") else None)

    if use_auth:
        auth = GstRtspServer.RTSPAuth()
        user_token = GstRtspServer.RTSPToken()
        user_token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        if args.digest:
            auth.add_digest(args.user, args.password, user_token)
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        else:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password),
                           user_token)
        anon_token = GstRtspServer.RTSPToken()
        anon_token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "anonymous")
        auth.set_default_token(anon_token)
        server.set_auth(auth)
    if args.tls_cert:
        if not use_auth:  # TLS alone: anonymous clients may play everything
            auth = GstRtspServer.RTSPAuth()
            anon_token = GstRtspServer.RTSPToken()
            anon_token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "anonymous")
            auth.set_default_token(anon_token)
            server.set_auth(auth)
        auth.set_tls_certificate(Gio.TlsCertificate.new_from_files(args.tls_cert, args.tls_key))

    factories: list[GstRtspServer.RTSPMediaFactory] = []
    one = GroupFactory(clip, tail) if args.shared and args.one_pipeline else None
    for path in args.paths or ["/cam"]:
        factory = one or (LoopFactory(clip, tail) if args.shared else FileFactory(clip, tail))
        factory.set_shared(args.shared)
        factory.set_protocols(GstRtsp.RTSPLowerTrans.UDP | GstRtsp.RTSPLowerTrans.TCP)
        if args.shared:
            # Looped media cannot honour FFmpeg's "Range: npt=0.000-" seek (server would answer
            # 503); CLOCK_AND_OFFSET makes rtsp-media treat the media as non-seekable.
            factory.set_publish_clock_mode(GstRtspServer.RTSPPublishClockMode.CLOCK_AND_OFFSET)
        if use_auth:
            # Anonymous may *access* (so the server answers 401, not 404) but not construct.
            perms = GstRtspServer.RTSPPermissions()
            for role, construct in (("user", "true"), ("anonymous", "false")):
                perms.add_role_from_structure(Gst.Structure.new_from_string(
                    f"{role}, media.factory.access=(boolean)true,"
                    f" media.factory.construct=(boolean){construct}"))
            factory.set_permissions(perms)
        elif args.tls_cert:
            perms = GstRtspServer.RTSPPermissions()
            perms.add_role_from_structure(Gst.Structure.new_from_string(
                "anonymous, media.factory.access=(boolean)true,"
                " media.factory.construct=(boolean)true"))
            factory.set_permissions(perms)
        mounts.add_factory(path, factory)
        if factory not in factories:
            factories.append(factory)

    if server.attach(None) == 0:
        print(f"cannot listen on {args.host}:{args.port}", file=sys.stderr)
        return 1
    print(f"READY {server.get_bound_port()}", flush=True)

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    try:
        loop.run()
    finally:
        for factory in factories:
            if isinstance(factory, LoopFactory):
                factory.reap_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
