"""Logging to stdout, one line per event, with credentials redacted at the sink."""

from __future__ import annotations

import logging
import sys

from collector.urls import redact


class RedactingFormatter(logging.Formatter):
    """Formats the record, then removes the user:password part of every URL in the line."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
