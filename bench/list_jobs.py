"""Listing 1,000 stored jobs through the real HTTP API, on SQLite and (if reachable) PostgreSQL.

    .venv/bin/python bench/list_jobs.py

Prints, per backend, the time to page through all jobs (`GET /jobs?limit=N` following `next`) and,
as the same-run baseline for this shared machine, the time of as many `GET /` requests.
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.config import load_settings
from collector.server import serve
from collector.storage import JobRow, Store

JOBS, ROUNDS = 1000, 5
PG = os.environ.get("COLLECTOR_TEST_DATABASE_URL",
                    "postgresql://collector:collector@127.0.0.1:5432/collector_test")


async def measure(url: str, data_dir: Path, limit: int) -> tuple[float, float, int]:
    store = Store.open(url)
    store.apply([JobRow(job_id=str(uuid.uuid4()), created_at=1e9 + i, status="completed",
                        started_at=None, finished_at=None, step=1, total=1, error=None,
                        params={"duration": 1}) for i in range(JOBS)])
    store.close()
    settings = load_settings({}, host="127.0.0.1", port=0, data_dir=data_dir, database_url=url,
                             log_level="WARNING")
    stop = trio.Event()
    pages_s, base_s = [], []
    async with trio.open_nursery() as nursery:
        running = await nursery.start(functools.partial(serve, settings, stop=stop))
        async with httpx.AsyncClient(base_url=running.url) as client:
            for _ in range(ROUNDS):
                start, cursor, seen, requests = time.perf_counter(), None, 0, 0
                while True:
                    params = {"limit": limit, **({"before": cursor} if cursor else {})}
                    page = (await client.get("/jobs", params=params)).json()
                    seen, requests = seen + len(page["jobs"]), requests + 1
                    if (cursor := page["next"]) is None:
                        break
                pages_s.append(time.perf_counter() - start)
                assert seen == JOBS
                start = time.perf_counter()
                for _ in range(requests):
                    await client.get("/")
                base_s.append(time.perf_counter() - start)
        stop.set()
    return statistics.median(pages_s), statistics.median(base_s), requests


async def main() -> None:
    import logging

    logging.disable(logging.INFO)
    backends = [("sqlite", None)]
    try:
        import psycopg

        psycopg.connect(PG, connect_timeout=2).close()
        backends.append(("postgresql", PG))
    except Exception as exc:
        print(f"postgresql: skipped ({exc})")
    print(f"{'backend':<11} {'limit':>5} {'pages':>5} {'all pages ms':>12} {'per page ms':>11} "
          f"{'GET / x pages ms':>16} {'ratio':>6}")
    for name, pg in backends:
        for limit in (37, 100):
            with tempfile.TemporaryDirectory() as tmp:
                data = Path(tmp) / "data"
                if pg:
                    import psycopg

                    schema = f"bench_{uuid.uuid4().hex[:8]}"
                    with psycopg.connect(pg, autocommit=True) as admin:
                        admin.execute(f"CREATE SCHEMA {schema}")
                    url = f"{pg}?options={quote(f'-csearch_path={schema}')}"
                else:
                    schema, url = None, f"sqlite://{data / 'collector.db'}"
                try:
                    total, base, pages = await measure(url, data, limit)
                finally:
                    if schema:
                        with psycopg.connect(pg, autocommit=True) as admin:
                            admin.execute(f"DROP SCHEMA {schema} CASCADE")
            print(f"{name:<11} {limit:>5} {pages:>5} {total * 1000:>12.1f} "
                  f"{total / pages * 1000:>11.2f} {base * 1000:>16.1f} {total / base:>6.2f}")


if __name__ == "__main__":
    trio.run(main)
