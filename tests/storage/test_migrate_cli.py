"""`python -m collector.storage migrate`, as a Procfile `release:` process runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from collector.storage.schema import LATEST

ROOT = Path(__file__).resolve().parents[2]


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "COLLECTOR_DATA_DIR")}
    return subprocess.run(
        [sys.executable, "-m", "collector.storage", *args], cwd=ROOT, env={**base, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_migrate_prints_the_version(database_url: str, tmp_path: Path) -> None:
    """Run twice against the same database: both succeed and print the latest version."""
    env = {"COLLECTOR_DATA_DIR": str(tmp_path / "data")}
    if database_url.startswith("postgresql://"):
        env["DATABASE_URL"] = "postgres://" + database_url.removeprefix("postgresql://")
    for _ in range(2):
        done = _run(env, "migrate")
        assert (done.returncode, done.stdout, done.stderr) == (0, f"schema version {LATEST}\n", "")
    if "DATABASE_URL" not in env:
        assert (tmp_path / "data" / "collector.db").is_file()


def test_usage(tmp_path: Path) -> None:
    done = _run({"COLLECTOR_DATA_DIR": str(tmp_path)}, "frobnicate")
    assert done.returncode == 2
    assert "usage" in done.stderr
