"""Finding the segment files a crash left unlisted (the readable ones are covered end to end in
tests/test_history.py::test_restart_after_sigkill)."""

from __future__ import annotations

from pathlib import Path

from collector.media.recovery import leftovers


def test_what_is_never_listed(tmp_path: Path) -> None:
    folder = tmp_path / "cam"
    assert leftovers(folder, set()) == []  # the source never opened a segment
    folder.mkdir()
    (folder / "segment-00003.mp4").write_bytes(b"")  # opened just before the kill
    (folder / "segment-00004.ts").write_bytes(b"\x47" + bytes(187))  # one empty TS packet
    (folder / "segment-00005.mkv").write_bytes(b"not a matroska file")
    for name in ("segment-x.mp4", "segment-²1.mp4", "notes.txt", "segment-00006.avi"):
        (folder / name).write_bytes(b"")
    assert leftovers(folder, {1, 2}) == []
