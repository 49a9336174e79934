"""Generate real, small media clips with the system ffmpeg for integration tests."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

FFMPEG = "ffmpeg"


@dataclass(frozen=True)
class ClipInfo:
    path: Path
    seconds: int
    fps: int
    gop_seconds: int
    frames: int


def _run(args: list[str]) -> None:
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"ffmpeg failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr}")


def make_clip(
    path: Path,
    seconds: int = 30,
    fps: int = 25,
    gop_seconds: int = 2,
    size: str = "320x240",
    audio: bool = True,
    container: str = "mkv",
    bframes: int = 0,
    ts_offset: float = 0.0,
    codec: str = "h264",
) -> ClipInfo:
    """Encode a testsrc2 (+ sine) clip: H.264 (or H.265) fixed GOP, AAC 48k mono.

    ``container`` is the ffmpeg muxer short name family: "mkv" -> matroska,
    "mp4" -> mp4, "ts" -> mpegts (anything else is passed to ``-f`` as is). ``bframes`` > 0
    codes that many B-frames between anchors (x264's and x265's B-pyramid from 2 on: frames
    reordered two deep), as many cameras do; 0 (the default) codes none. ``ts_offset``
    (seconds) starts the clip's timestamps there (for clips joined end to end, see
    `make_switching_clip`). ``codec`` "h265" encodes with libx265 instead of libx264: closed
    GOPs (every key frame an IDR picture, as cameras send them; x265's default open GOPs start
    them with CRA pictures that later pictures reach across), parameter sets with each.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {"mkv": "matroska", "mp4": "mp4", "ts": "mpegts"}.get(container, container)
    gop = fps * gop_seconds
    args = [FFMPEG, "-hide_banner", "-nostdin", "-y", "-v", "error",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    args += ["-map", "0:v"] + (["-map", "1:a"] if audio else [])
    args += _video_codec(codec, gop, bframes)
    if audio:
        args += ["-c:a", "aac", "-b:a", "64k", "-ar", "48000", "-ac", "1"]
    if fmt == "mp4":
        args += ["-movflags", "+faststart"]
    if ts_offset:
        args += ["-output_ts_offset", str(ts_offset)]
    args += ["-t", str(seconds), "-f", fmt, str(path)]
    _run(args)
    return ClipInfo(path=path, seconds=seconds, fps=fps, gop_seconds=gop_seconds,
                    frames=seconds * fps)


def _video_codec(codec: str, gop: int, bframes: int) -> list[str]:
    """ffmpeg's video encoding options for `make_clip`: a key frame every `gop` frames exactly."""
    if codec == "h264":
        tune = [] if bframes else ["-tune", "zerolatency"]  # which would turn B-frames off
        return ["-c:v", "libx264", "-preset", "veryfast", *tune, "-profile:v", "main",
                "-pix_fmt", "yuv420p", "-g", str(gop), "-keyint_min", str(gop),
                "-sc_threshold", "0", "-bf", str(bframes), "-x264-params", "repeat-headers=1"]
    if codec == "h265":
        x265 = (f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0:bframes={bframes}"
                ":repeat-headers=1:log-level=error")
        return ["-c:v", "libx265", "-preset", "veryfast", "-profile:v", "main",
                "-pix_fmt", "yuv420p", "-x265-params", x265]
    raise ValueError(f"make_clip: no encoder for codec {codec!r} (h264, h265)")


def make_switching_clip(path: Path, sizes: tuple[str, ...], seconds: int = 4, fps: int = 25,
                        gop_seconds: int = 2, codec: str = "h264") -> ClipInfo:
    """A video-only MPEG-TS clip whose picture size changes every ``seconds`` (a camera
    reconfigured mid-stream): one clip per size, each starting with a key frame and its own
    SPS/PPS, joined (`_joined_ts`)."""
    return _joined_ts(path, [dict(size=size, audio=False, gop_seconds=gop_seconds, codec=codec)
                             for size in sizes], seconds, fps)


def make_audio_joining_clip(path: Path, seconds: int = 4, fps: int = 25) -> ClipInfo:
    """An MPEG-TS clip of `seconds` of video alone, then `seconds` of video with audio (its
    program map gains the audio stream there), joined (`_joined_ts`): a stream that appears
    mid-file, which FFmpeg's open does not see."""
    return _joined_ts(path, [dict(audio=False), dict(audio=True)], seconds, fps)


def _joined_ts(path: Path, parts: list[dict], seconds: int, fps: int) -> ClipInfo:
    """MPEG-TS clips of `seconds` each, `make_clip` with each of `parts`' options, their
    timestamps continuing, joined byte for byte (MPEG-TS files concatenate)."""
    path = Path(path)
    data = []
    for i, options in enumerate(parts):
        part = path.with_name(f"{path.stem}-{i}.ts")
        make_clip(part, seconds=seconds, fps=fps, container="ts", ts_offset=i * seconds,
                  **options)
        data.append(part.read_bytes())
    path.write_bytes(b"".join(data))
    return ClipInfo(path=path, seconds=seconds * len(parts), fps=fps,
                    gop_seconds=parts[0].get("gop_seconds", 2), frames=seconds * fps * len(parts))


def make_hls(clip: Path, folder: Path, hls_time: int = 2) -> Path:
    """Remux ``clip`` (no re-encode) into a VOD HLS playlist + TS segments; return the .m3u8."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    playlist = folder / "index.m3u8"
    _run([FFMPEG, "-hide_banner", "-nostdin", "-y", "-v", "error", "-i", str(clip),
          "-c", "copy", "-f", "hls", "-hls_time", str(hls_time), "-hls_playlist_type", "vod",
          "-hls_segment_filename", str(folder / "seg%05d.ts"), str(playlist)])
    return playlist


def make_ts(clip: Path, path: Path) -> Path:
    """Remux ``clip`` (no re-encode) into an MPEG-TS file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _run([FFMPEG, "-hide_banner", "-nostdin", "-y", "-v", "error", "-i", str(clip),
          "-c", "copy", "-f", "mpegts", str(path)])
    return path


def make_flv_alaw(clip: Path, path: Path) -> Path:
    """``clip``'s video copied into FLV beside its audio as G.711 A-law (8 kHz mono): a codec
    no segment format of ours holds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _run([FFMPEG, "-y", "-loglevel", "error", "-i", str(clip), "-c:v", "copy",
          "-c:a", "pcm_alaw", "-ar", "8000", "-ac", "1", "-f", "flv", str(path)])
    return path


def make_switching_flv(path: Path, sizes: tuple[str, ...], seconds: int = 4,
                       fps: int = 25) -> ClipInfo:
    """A video-only FLV clip whose picture size changes every ``seconds``, as an RTMP encoder
    sends it: the parameter sets only out of band, each part's in an AVC sequence header of its
    own (FFmpeg's FLV muxer writes one for the new-extradata side data of a part's first
    packet), none in the frames (x264's in-band copies are taken out)."""
    import av
    import av.packet

    path = Path(path)
    out = av.open(str(path), "w", format="flv")
    stream, offset = None, 0
    for i, size in enumerate(sizes):
        part = make_clip(path.with_name(f"{path.stem}-{i}.mkv"), seconds=seconds, fps=fps,
                         size=size, audio=False)
        with av.open(str(part.path)) as container:
            video = container.streams.video[0]
            extradata = bytes(video.codec_context.extradata)
            if stream is None:
                stream = out.add_stream_from_template(video)
                stream.time_base = video.time_base
            end = offset
            for n, packet in enumerate(p for p in container.demux(video) if p.dts is not None):
                frame = av.Packet(_without_parameter_sets(bytes(packet)))
                frame.pts, frame.dts = packet.pts + offset, packet.dts + offset
                frame.time_base, frame.is_keyframe = packet.time_base, packet.is_keyframe
                frame.duration = packet.duration
                if n == 0 and i > 0:
                    side = av.packet.PacketSideData(1, len(extradata))  # AV_PKT_DATA_NEW_EXTRADATA
                    side.update(extradata)
                    frame.set_sidedata(side)
                frame.stream = stream
                out.mux(frame)
                end = max(end, frame.pts + (packet.duration or 0))
            offset = end
    out.close()
    return ClipInfo(path=path, seconds=seconds * len(sizes), fps=fps, gop_seconds=2,
                    frames=seconds * fps * len(sizes))


def _without_parameter_sets(frame: bytes) -> bytes:
    """An AVC (4-byte length-prefixed) frame without its SPS and PPS NAL units."""
    kept, at = [], 0
    while at + 4 <= len(frame):
        size = int.from_bytes(frame[at:at + 4], "big")
        if frame[at + 4] & 0x1F not in (7, 8):
            kept.append(frame[at:at + 4 + size])
        at += 4 + size
    return b"".join(kept)
