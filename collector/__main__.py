"""`python -m collector` / `camera-collector [serve]`: start the service on $PORT.

`camera-collector collect|jobs|watch` are the command-line client (collector/cli.py).
"""

from __future__ import annotations

import argparse
import gc
import sys

import trio

from collector.config import ConfigError, load_settings
from collector.logs import setup_logging
from collector.params import config_cameras
from collector.rtsp.tls import context_trusting
from collector.server import serve
from collector.storage.owner import DatabaseInUse

CLIENT_COMMANDS = ("collect", "jobs", "watch")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] and args[0] in (*CLIENT_COMMANDS, "-h", "--help"):
        from collector import cli  # the client's imports (httpx, rich) only when asked for

        return cli.main(args)
    parser = argparse.ArgumentParser(prog="camera-collector", description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"])
    parser.parse_args(args)
    try:
        settings = load_settings()
        config_cameras(settings)  # a bad camera in the configuration file stops us here
        if settings.rtsps_ca_file:  # so does a CA file that cannot be loaded
            context_trusting(settings.rtsps_ca_file)
    except ConfigError as exc:
        print(f"camera-collector: configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    # Everything imported so far (quart, hypercorn, PyAV, ...) lives as long as the process: keep it
    # out of the cyclic collector's full passes, which otherwise took 35-106 ms at 50 cameras and
    # stalled the event loop that long (measured; 8-21 ms once frozen).
    gc.collect()
    gc.freeze()
    try:
        trio.run(serve, settings)
    except DatabaseInUse as exc:
        print(f"camera-collector: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
