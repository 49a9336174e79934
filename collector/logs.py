"""Logging to stdout, one line per event, with credentials redacted at the sink.

`COLLECTOR_LOG_FORMAT=json` writes one JSON object per line (`time`, `level`, `logger`, `message`,
and the `key=value` pairs of our event-shaped messages as fields) for log collectors.
"""

from __future__ import annotations

import json
import logging
import re
import sys

from collector.urls import redact

_PAIR = re.compile(r"(\w+)=(\S+)")


class RedactingFormatter(logging.Formatter):
    """Formats the record, then removes the user:password part of every URL in the line."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = redact(record.getMessage())
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        event, _, _ = message.partition(" ")
        if "." in event and "=" not in event:
            line["event"] = event
        line.update({k: v for k, v in _PAIR.findall(message) if k not in line})
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line)


def setup_logging(level: str = "INFO", fmt: str = "plain") -> None:
    handler = logging.StreamHandler(sys.stdout)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
