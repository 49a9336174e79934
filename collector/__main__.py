"""`python -m collector` / `camera-collector [serve]`: start the service on $PORT."""

from __future__ import annotations

import argparse
import sys

import trio

from collector.config import ConfigError, load_settings
from collector.logs import setup_logging
from collector.server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="camera-collector", description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"])
    parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"camera-collector: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    trio.run(serve, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
