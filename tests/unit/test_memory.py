"""Returning freed heap memory to the OS (the collector runs on glibc Linux)."""

from __future__ import annotations

import platform

import pytest

from collector.memory import release_free_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_free_memory_finds_malloc_trim_on_glibc() -> None:
    big = [bytes(200_000) for _ in range(50)]  # freed below: something to give back
    del big
    assert release_free_memory() is True
