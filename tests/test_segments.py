"""Segment writers at their edges: a disk that refuses part of a write, a segment that cannot be
made, and audio templates for what a camera's SDP may announce."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import av
import pytest

from collector.errors import SegmentError, UnsupportedSource
from collector.media import segments, writeback
from collector.media.pyav_source import describe_streams, to_media_packet
from collector.media.segments import SegmentWriter
from collector.rtsp import templates
from collector.rtsp.aac import AacConfig
from tests.media.clips import ClipInfo, make_clip
from tests.media.probe import count_frames

ROOT = Path(__file__).resolve().parent.parent

# Writes the clip into one segment, in a process of its own: with a file size limit (RLIMIT_FSIZE,
# SIGXFSZ ignored) the write that crosses it is cut short by the kernel, as on a full disk.
WRITE_WHOLE_CLIP = """
import resource, signal, sys
from pathlib import Path
import av
from collector.errors import SegmentError
from collector.media.pyav_source import describe_streams, to_media_packet
from collector.media.segments import SegmentWriter
clip, out, fmt, limit = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
with av.open(clip) as container:
    chosen, infos = describe_streams(container)
    bases = {s.index: s.time_base for s in chosen}
    packets = [to_media_packet(p, bases[p.stream_index]) for p in container.demux(*chosen)
               if p.dts is not None]
if limit:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
try:
    writer = SegmentWriter(out, fmt, infos, index=1, start_seconds=0.0)
    for p in packets:
        writer.write(p, p.pts, p.dts)
    print("closed", writer.close("end").bytes)
except SegmentError as exc:
    print("SegmentError", exc)
"""


def write_whole_clip(clip: Path, out: Path, fmt: str, limit: int = 0) -> str:
    proc = subprocess.run([sys.executable, "-c", WRITE_WHOLE_CLIP, str(clip), str(out), fmt,
                           str(limit)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("fmt", ["mp4", "mkv", "ts"])
def test_a_write_cut_short_fails_the_segment(media_clip: ClipInfo, tmp_path: Path, fmt: str):
    """The whole clip fits: the file is complete. With room for all but its last 10 bytes, the
    segment fails ("File too large") instead of a truncated file closing as complete, as it did
    when a short write's count was handed to FFmpeg, which ignores it."""
    whole = tmp_path / f"whole.{fmt}"
    said = write_whole_clip(media_clip.path, whole, fmt)
    assert said == f"closed {whole.stat().st_size}"
    assert count_frames(whole) == media_clip.frames

    cut = tmp_path / f"cut.{fmt}"
    said = write_whole_clip(media_clip.path, cut, fmt, limit=whole.stat().st_size - 10)
    assert said.startswith("SegmentError cannot ") and "File too large" in said, said


def test_a_segment_that_cannot_be_made_leaves_no_file(media_clip: ClipInfo, tmp_path: Path):
    """A segment refused before its first packet (here: no video stream to write) leaves neither
    a file behind nor an open container."""
    with av.open(str(media_clip.path)) as container:
        _, infos = describe_streams(container)
    audio_only = tuple(info for info in infos if info.kind == "audio")
    path = tmp_path / "segment-00001.mp4"
    with pytest.raises(SegmentError, match="cannot hold this source's video"):
        SegmentWriter(path, "mp4", audio_only, index=1, start_seconds=0.0)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("rate", "channels", "layout"), [
    (8000, 1, "mono"), (48000, 2, "stereo"), (48000, 0, "stereo"), (16000, 6, "5.1"),
    (48000, 8, "7.1"),  # a planar frame of 8 channels crashed the process (PyAV's plane count)
])
def test_audio_templates_for_what_an_sdp_announces(rate: int, channels: int, layout: str):
    template = templates.audio_template(rate, channels)
    ctx = template.codec_context
    assert (ctx.name, ctx.sample_rate, ctx.layout.name) == ("aac", rate, layout)
    assert ctx.codec.is_decoder  # a decoder's context: ~36 KiB per segment, not ~550 KiB


@pytest.mark.parametrize(("rate", "channels"), [(48000, 9), (48000, 16), (90000, 2)])
def test_audio_formats_we_cannot_mux_are_refused_not_crashed(rate: int, channels: int):
    with pytest.raises(UnsupportedSource) as info:
        templates.audio_template(rate, channels)
    assert info.value.reason == "codec"


def test_aac_channel_configuration_seven_is_eight_channels():
    """ISO 14496-3: channelConfiguration 7 is 7.1, eight channels; 8-15 are not channel counts."""
    def channels(config: int) -> int:
        # AudioSpecificConfig: 5 bits object type (2, LC), 4 bits rate index (3, 48 kHz), 4 bits
        # channel configuration, 3 bits of flags
        asc = (2 << 11) | (3 << 7) | (config << 3)
        return AacConfig(config=asc.to_bytes(2, "big")).channels()

    assert [channels(c) for c in (1, 2, 6, 7, 8, 15, 0)] == [1, 2, 6, 8, 0, 0, 0]


class Clock:
    """A monotonic clock for SegmentFile that moves only when told to (`now`), or by `step`
    seconds each time it is read."""

    def __init__(self, step: float = 0.0) -> None:
        self.now, self.step = 1000.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_segment_files_start_writeback_each_mib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Every MiB written at a camera's pace, the file asks the kernel to write its dirty pages
    back now (advice for the whole file: muxers seek back), so the fsync at close has at most a
    MiB left. The advice is given in the writeback thread, never the writer's (it can block on
    the journal), on a duplicate of the file's descriptor; its failing changes nothing, and the
    file holds exactly what was written."""
    clock = Clock()
    monkeypatch.setattr(segments.SegmentFile, "clock", clock)
    advice: list[tuple[int, int, int, int, str]] = []

    def advise(fd: int, offset: int, length: int, how: int) -> None:
        advice.append((os.fstat(fd).st_ino, offset, length, how, threading.current_thread().name))
        if len(advice) == 2:
            raise OSError(22, "Invalid argument")

    monkeypatch.setattr(writeback.os, "posix_fadvise", advise)
    data = bytes(range(256)) * (14 * 1024)  # 3.5 MiB
    path = tmp_path / "segment.mp4"
    with segments.SegmentFile(path, "wb") as f:
        for start in range(0, len(data), 32 * 1024):
            clock.now += 0.125  # 32 KiB at 2 Mbit/s
            assert f.write(data[start:start + 32 * 1024]) == min(32 * 1024, len(data) - start)
            writeback.WRITEBACK.drain()
            assert len(advice) == (start + 32 * 1024) // (1 << 20)
        inode = os.fstat(f.fileno()).st_ino
    assert advice == [(inode, 0, 0, os.POSIX_FADV_DONTNEED, "segment-writeback")] * 3
    assert path.read_bytes() == data


def test_a_file_has_one_writeback_kick_waiting_at_most(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    """A slow disk cannot pile up descriptors: while a file's kick waits, further MiBs ask for
    none; once it is given, the next MiB asks again. The duplicates are closed."""
    monkeypatch.setattr(segments.SegmentFile, "clock", Clock(step=1.0))
    release, given = threading.Event(), []

    def advise(fd: int, offset: int, length: int, how: int) -> None:
        release.wait(10)
        given.append(fd)

    monkeypatch.setattr(writeback.os, "posix_fadvise", advise)
    mib = bytes(1 << 20)
    open_fds = len(os.listdir("/proc/self/fd"))
    with segments.SegmentFile(tmp_path / "segment.ts", "wb") as f:
        for _ in range(4):  # the first kick blocks in the thread: the next three ask for none
            f.write(mib)
        release.set()
        writeback.WRITEBACK.drain()
        f.write(mib)
        writeback.WRITEBACK.drain()
    assert len(given) == 2
    assert len(os.listdir("/proc/self/fd")) == open_fds  # the thread closed its duplicates


def test_a_file_written_fast_is_kicked_once_a_second_at_most(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch):
    """A file ingested at hundreds of times real time writes whole segments in a fraction of a
    second: no kick until a second has passed since the file opened (or was last kicked), then
    one for everything written so far. Its fsync at close writes the rest back either way."""
    clock = Clock()
    monkeypatch.setattr(segments.SegmentFile, "clock", clock)
    kicks: list[int] = []
    monkeypatch.setattr(writeback.os, "posix_fadvise",
                        lambda fd, offset, length, how: kicks.append(os.fstat(fd).st_size))
    mib = bytes(1 << 20)
    with segments.SegmentFile(tmp_path / "segment.mp4", "wb") as f:
        for _ in range(3):
            f.write(mib)
        clock.now += 0.9
        f.write(mib)
        writeback.WRITEBACK.drain()
        assert kicks == []
        clock.now += 0.1  # a second since the file opened
        f.write(bytes(10))
        writeback.WRITEBACK.drain()
        assert kicks == [4 * (1 << 20) + 10]
        clock.now += 0.5
        f.write(mib)  # a MiB since, but half a second
        clock.now += 0.5
        f.write(bytes(10))
        writeback.WRITEBACK.drain()
    assert kicks == [4 * (1 << 20) + 10, 5 * (1 << 20) + 20]


@pytest.mark.parametrize("buffer", [segments.IO_BUFFER_BYTES, segments.FAST_IO_BUFFER_BYTES])
def test_a_segment_reaches_its_file_in_pieces_of_its_io_buffer(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               buffer: int):
    """FFmpeg hands a segment to its file a buffer at a time, each piece a call into Python:
    32 KiB for a camera (memory: one buffer per open segment), 256 KiB for a file recorded
    faster than real time (8x fewer calls). A 720p clip's half-second fragments
    (~150 KiB) fill several small buffers, or one large one."""
    clip = make_clip(tmp_path / "clip.mkv", seconds=4, size="1280x720")
    pieces: list[int] = []
    write = segments.SegmentFile.write

    def counted(self: segments.SegmentFile, data: bytes) -> int:
        pieces.append(len(memoryview(data).cast("B")))
        return write(self, data)

    monkeypatch.setattr(segments.SegmentFile, "write", counted)
    with av.open(str(clip.path)) as container:
        chosen, infos = describe_streams(container)
        bases = {s.index: s.time_base for s in chosen}
        packets = [to_media_packet(p, bases[p.stream_index]) for p in container.demux(*chosen)
                   if p.dts is not None]
    out = tmp_path / "segment.mp4"
    writer = SegmentWriter(out, "mp4", infos, index=1, start_seconds=0.0, io_buffer_bytes=buffer)
    for p in packets:
        writer.write(p, p.pts, p.dts)
    result = writer.close("end")
    assert count_frames(out) == result.frames == clip.frames
    assert sum(pieces) == result.bytes and max(pieces) <= buffer
    if buffer == segments.IO_BUFFER_BYTES:
        assert pieces.count(buffer) >= len(pieces) // 2  # most fill the buffer
    else:
        assert max(pieces) > segments.IO_BUFFER_BYTES  # whole fragments at once
