"""The schema, as a list of forward migrations, and the function that applies the missing ones.

Each migration is a version and its statements, written in the SQL that SQLite and PostgreSQL share
(`DOUBLE PRECISION`, `BIGINT`, `TEXT` for JSON). Applied migrations are recorded in
`schema_migrations`; a migration, once released, is never edited: add the next version instead.

Two processes starting at once are serialised before anything is read: PostgreSQL by a transaction-
scoped advisory lock, SQLite by `BEGIN IMMEDIATE` (the database write lock, waited for through
`busy_timeout`). The second process then sees the first one's versions and applies nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collector.storage.backends import Backend

# Foreign keys are deferred to commit, so a batch may name its job before the job's own row.
_V1 = (
    """CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY,
        created_at DOUBLE PRECISION NOT NULL,
        status TEXT NOT NULL,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        step INTEGER NOT NULL,
        total INTEGER NOT NULL,
        error TEXT,
        params TEXT NOT NULL
    )""",
    "CREATE INDEX jobs_created ON jobs (created_at, job_id)",
    "CREATE INDEX jobs_status_created ON jobs (status, created_at, job_id)",
    "CREATE INDEX jobs_finished ON jobs (finished_at)",
    """CREATE TABLE sources (
        job_id TEXT NOT NULL
            REFERENCES jobs (job_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
        source_index INTEGER NOT NULL,
        name TEXT NOT NULL,
        url TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        steps_done INTEGER NOT NULL,
        steps_total INTEGER NOT NULL,
        errors TEXT NOT NULL,
        gaps TEXT NOT NULL,
        PRIMARY KEY (job_id, source_index)
    )""",
    """CREATE TABLE segments (
        job_id TEXT NOT NULL
            REFERENCES jobs (job_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
        source_index INTEGER NOT NULL,
        segment_index INTEGER NOT NULL,
        path TEXT NOT NULL,
        start_time DOUBLE PRECISION NOT NULL,
        start_seconds DOUBLE PRECISION NOT NULL,
        duration DOUBLE PRECISION NOT NULL,
        bytes BIGINT NOT NULL,
        frames INTEGER NOT NULL,
        keyframes INTEGER NOT NULL,
        end_reason TEXT NOT NULL,
        format TEXT NOT NULL,
        PRIMARY KEY (job_id, source_index, segment_index)
    )""",
    """CREATE TABLE events (
        job_id TEXT NOT NULL
            REFERENCES jobs (job_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
        seq INTEGER NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        type TEXT NOT NULL,
        text TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    )""",
    """CREATE TABLE cameras (
        name TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        options TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    )""",
)

_V2 = ("ALTER TABLE segments ADD COLUMN codec TEXT NOT NULL DEFAULT ''",)

# Nullable: segments stored before v3 never had their closing time recorded.
_V3 = ("ALTER TABLE segments ADD COLUMN end_time DOUBLE PRECISION",)

MIGRATIONS: list[tuple[int, tuple[str, ...]]] = [
    (1, _V1),
    (2, _V2),  # segments.codec
    (3, _V3),  # segments.end_time
]

LATEST = MIGRATIONS[-1][0]

_CREATE_LEDGER = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at DOUBLE PRECISION NOT NULL
)"""


def migrate(backend: Backend, now: float) -> int:
    """Apply every migration newer than the database's version, in one transaction; return it."""
    with backend.transaction(lock=True) as tx:
        tx.execute(_CREATE_LEDGER)
        row = tx.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        current = row[0] or 0
        if current > LATEST:
            raise RuntimeError(
                f"database schema version {current} is newer than this program's {LATEST}"
            )
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                tx.execute(statement)
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", (version, now)
            )
            current = version
    return current


def version(backend: Backend) -> int:
    with backend.transaction() as tx:
        row = tx.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)
