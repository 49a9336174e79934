"""Logging to stdout, one line per event, with credentials redacted at the sink.

One line per event holds even for text from outside (a request's path in the access log, a
camera's error text): line breaks and other control characters in a message are escaped
(`\\n`, `\\x00`; a lone surrogate as `\\ud800`), so nobody can forge a log line or make
the log look binary. An exception's traceback still follows its line, as Python writes it.

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
# What str.splitlines() splits at, the rest of C0 and DEL, and lone surrogates (which stdout
# cannot encode: the line was lost, and a "Logging error" traceback written instead)
_CONTROL = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """`text` with its control characters escaped (the same string when it has none)."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


class RedactingFormatter(logging.Formatter):
    """Formats the record on one line (a traceback follows it), then removes the user:password
    part of every URL."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)

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
