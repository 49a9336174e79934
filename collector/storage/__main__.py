"""`python -m collector.storage migrate`: migrate the database schema, print its version.

For a Procfile `release:` process. The database is `DATABASE_URL`, else SQLite in
`COLLECTOR_DATA_DIR` (default `./data`), as for the service itself.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from collector.storage import Store, database_url

USAGE = "usage: python -m collector.storage migrate"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["migrate"]:
        print(USAGE, file=sys.stderr)
        return 2
    data_dir = Path(os.environ.get("COLLECTOR_DATA_DIR") or "data")
    store = Store.open(database_url(os.environ.get("DATABASE_URL"), data_dir))
    try:
        print(f"schema version {store.schema_version()}")
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
