"""Persistence of jobs, sources, segments, events and registered cameras.

`Store.open(database_url(os.environ.get("DATABASE_URL"), settings.data_dir))` gives SQLite in the
data directory by default, or PostgreSQL when the host provides `DATABASE_URL`. The actors build
`writes` rows and apply them in batches from a worker thread.
"""

from __future__ import annotations

from pathlib import Path

from collector.storage.store import Store
from collector.storage.writes import CameraRow, EventRow, JobRow, SegmentRow, SourceRow, Write

__all__ = [
    "CameraRow",
    "EventRow",
    "JobRow",
    "SegmentRow",
    "SourceRow",
    "Store",
    "Write",
    "database_url",
]


def database_url(env_value: str | None, data_dir: Path) -> str:
    """`DATABASE_URL` when set (`postgres://`, as Procfile hosts give it, becomes `postgresql://`),
    else SQLite at `<data_dir>/collector.db`."""
    if env_value:
        if env_value.startswith("postgres://"):
            return "postgresql://" + env_value.removeprefix("postgres://")
        return env_value
    return f"sqlite://{(data_dir / 'collector.db').resolve()}"
