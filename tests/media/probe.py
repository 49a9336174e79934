"""ffprobe/ffmpeg helpers to inspect what a test recorded (sync, subprocess based)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

FFPROBE = "ffprobe"
FFMPEG = "ffmpeg"


class ProbeError(AssertionError):
    """ffprobe/ffmpeg could not read the file; the message carries their stderr."""


@dataclass(frozen=True)
class StreamInfo:
    index: int
    codec_type: str  # "video" | "audio" | ...
    codec_name: str
    nb_read_frames: int | None  # only when probed with count_frames=True


@dataclass(frozen=True)
class ProbeResult:
    format_name: str  # e.g. "matroska,webm", "mpegts", "hls"
    duration: float | None
    streams: list[StreamInfo]

    def of_type(self, codec_type: str) -> list[StreamInfo]:
        return [s for s in self.streams if s.codec_type == codec_type]

    @property
    def video(self) -> StreamInfo | None:
        found = self.of_type("video")
        return found[0] if found else None

    @property
    def audio(self) -> StreamInfo | None:
        found = self.of_type("audio")
        return found[0] if found else None


@dataclass(frozen=True)
class Packet:
    pts_time: float | None
    dts_time: float | None
    duration_time: float | None
    flags_keyframe: bool
    size: int
    data_hash: str  # "MD5:..."


def _ffprobe(path: Path | str, *args: str) -> dict:
    cmd = [FFPROBE, "-v", "error", "-of", "json", *args, str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ProbeError(
            f"ffprobe failed ({proc.returncode}) on {path}: {' '.join(cmd)}\n{proc.stderr}"
        )
    return json.loads(proc.stdout or "{}")


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "N/A") else None
    except ValueError:
        return None


def probe(path: Path | str, count_frames: bool = True) -> ProbeResult:
    """Format + streams; with ``count_frames`` every stream is decoded to fill nb_read_frames."""
    args = ["-show_format", "-show_streams"] + (["-count_frames"] if count_frames else [])
    data = _ffprobe(path, *args)
    fmt = data.get("format", {})
    streams = [
        StreamInfo(
            index=int(s["index"]),
            codec_type=s.get("codec_type", ""),
            codec_name=s.get("codec_name", ""),
            nb_read_frames=_int(s.get("nb_read_frames")),
        )
        for s in data.get("streams", [])
    ]
    return ProbeResult(format_name=fmt.get("format_name", ""), duration=_float(fmt.get("duration")),
                       streams=streams)


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "N/A") else None


def count_frames(path: Path | str, stream: str = "v") -> int:
    """Decoded frame count of the first stream matching ``-select_streams`` (v, a, v:0...)."""
    data = _ffprobe(path, "-count_frames", "-select_streams", stream,
                    "-show_entries", "stream=nb_read_frames")
    streams = data.get("streams", [])
    if not streams:
        raise ProbeError(f"no stream {stream!r} in {path}")
    return _int(streams[0].get("nb_read_frames")) or 0


def packets(path: Path | str, stream: str = "v") -> list[Packet]:
    """All packets (demux order) of the selected stream, with MD5 of their payload."""
    data = _ffprobe(path, "-select_streams", stream, "-show_packets", "-show_data_hash", "MD5",
                    "-show_entries", "packet=pts_time,dts_time,duration_time,flags,size,data_hash")
    return [
        Packet(
            pts_time=_float(p.get("pts_time")),
            dts_time=_float(p.get("dts_time")),
            duration_time=_float(p.get("duration_time")),
            flags_keyframe="K" in p.get("flags", ""),
            size=int(p.get("size", 0)),
            data_hash=p.get("data_hash", ""),
        )
        for p in data.get("packets", [])
    ]


def decode_errors(path: Path | str) -> str:
    """Fully decode the file; return ffmpeg's error output ("" means a clean decode)."""
    cmd = [FFMPEG, "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ProbeError(f"ffmpeg failed ({proc.returncode}) on {path}\n{proc.stderr}")
    return proc.stderr
