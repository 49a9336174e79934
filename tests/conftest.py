"""Shared fixtures: real media clips generated once per test session (tests/media)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# `tests.media` must be importable under plain `pytest` too (python -m pytest adds the cwd).
ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from tests.media.clips import ClipInfo, make_clip, make_hls, make_ts  # noqa: E402


@pytest.fixture(scope="session")
def media_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipInfo:
    """12 s 320x240 25 fps H.264 (GOP 2 s, no B-frames) + AAC 48k mono, in Matroska."""
    return make_clip(tmp_path_factory.mktemp("media") / "clip.mkv", seconds=12)


@pytest.fixture(scope="session")
def media_ts(media_clip: ClipInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``media_clip`` remuxed to MPEG-TS."""
    return make_ts(media_clip.path, tmp_path_factory.mktemp("ts") / "clip.ts")


@pytest.fixture(scope="session")
def media_hls(media_clip: ClipInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``media_clip`` remuxed to a VOD HLS playlist (2 s segments); returns the .m3u8."""
    return make_hls(media_clip.path, tmp_path_factory.mktemp("hls"))
