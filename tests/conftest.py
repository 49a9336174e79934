"""Shared fixtures: real media clips generated once per test session (tests/media)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.media.clips import ClipInfo, make_clip, make_hls, make_ts


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


@pytest.fixture
def settings(tmp_path: Path):
    """Settings for an in-process collector on a free port, writing under tmp_path."""
    from collector.config import load_settings

    return load_settings({}, host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                         graceful_timeout_s=5.0)


@pytest.fixture
async def collector(settings, nursery):
    """A real collector (supervisor + hypercorn) on a free port; stopped after the test."""
    import functools

    import trio

    from collector.server import serve

    stop = trio.Event()
    running = await nursery.start(functools.partial(serve, settings, stop=stop))
    yield running
    stop.set()


@pytest.fixture
async def client(collector):
    import httpx

    async with httpx.AsyncClient(base_url=collector.url, timeout=10) as http:
        yield http


@pytest.fixture
def read_ahead(monkeypatch, caplog):
    """`read_ahead(True)`: every file over HTTP is large enough to be read ahead (pyav_source);
    False: none is. Either way the source's log lines are captured (`source.read_ahead`)."""
    import logging

    from collector.media import read_ahead

    def set_(on: bool) -> None:
        monkeypatch.setattr(read_ahead, "READ_AHEAD_MIN_BYTES", 1 if on else 1 << 40)
        caplog.set_level(logging.INFO, logger="collector.media")

    return set_


# The history's database, SQLite or a fresh PostgreSQL schema, for every test that asks for it.
from tests.storage.conftest import database_url  # noqa: E402, F401
