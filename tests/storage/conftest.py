"""Every storage test runs against SQLite (in tmp_path) and PostgreSQL (a fresh schema per test).

PostgreSQL is `$COLLECTOR_TEST_DATABASE_URL`, else the URL `scripts/start-postgres` prints. When it
cannot be reached the PostgreSQL variant is skipped with the reason, except under CI (`$CI` set),
where that is a failure: CI must test both backends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from collector.storage import Store

DEFAULT_PG_URL = "postgresql://collector:collector@127.0.0.1:5432/collector_test"

_reachable: dict[str, str | None] = {}  # url -> None when reachable, else why not


def _pg_url() -> str:
    return os.environ.get("COLLECTOR_TEST_DATABASE_URL") or DEFAULT_PG_URL


def _why_unreachable(url: str) -> str | None:
    if url not in _reachable:
        try:
            import psycopg

            with psycopg.connect(url, connect_timeout=3):
                _reachable[url] = None
        except Exception as exc:  # any reason at all: report it in the skip
            _reachable[url] = f"{type(exc).__name__}: {exc}".strip()
    return _reachable[url]


def _with_search_path(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL naming an empty database of the parametrized backend."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'collector.db'}"
        return
    url = _pg_url()
    why = _why_unreachable(url)
    if why is not None:
        message = f"PostgreSQL unreachable ({why}); run scripts/start-postgres"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    import psycopg

    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield _with_search_path(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    s = Store.open(database_url)
    try:
        yield s
    finally:
        s.close()
