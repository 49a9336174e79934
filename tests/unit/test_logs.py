"""Log lines: one per event, whatever text from outside they carry."""

from __future__ import annotations

import logging
import sys

from collector.logs import RedactingFormatter, one_line


def test_one_line_escapes_what_would_break_or_forge_a_line():
    assert one_line("plain text: ünïcode €") == "plain text: ünïcode €"
    assert one_line("a\nb\rc\td\x00e\x7f") == "a\\nb\\rc\\td\\x00e\\x7f"
    assert one_line("a\u2028b\x85c") == "a\\u2028b\\x85c"
    assert one_line("a\ud800b") == "a\\ud800b"  # stdout cannot encode it


def test_the_formatter_keeps_tracebacks_and_redacts():
    formatter = RedactingFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("n", logging.INFO, "p", 1, "url=%s note=%s",
                               ("rtsp://u:p@h/x", "x\ny\ud800"), None)
    assert formatter.format(record) == "INFO url=rtsp://***@h/x note=x\\ny\\ud800"
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("n", logging.ERROR, "p", 1, "a\nb", (), sys.exc_info())
    first, *rest = formatter.format(failed).splitlines()
    assert first == "ERROR a\\nb"
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: boom"
