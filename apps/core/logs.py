"""Logging with the request id on every line, so one request's lines can be found among many, and
one line per record whatever a client sends: nothing a client controls can forge or split a line.

Two layers. `escape_field` renders a client-sent value (path, method, address) for a log line:
control and other non-printable characters as backslash escapes, `"` and `\\` escaped, so a
quoted field cannot be closed early. `EscapingFormatter`, on the root handler, escapes any control
character left in a formatted line, whoever logged it (belt and braces); tracebacks, appended after
the line, keep their own lines.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

import settings

# Set by middleware.RequestContextMiddleware for the duration of one request; "-" outside requests.
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

_base_factory = logging.getLogRecordFactory()


def _escape_char(char: str) -> str:
    if char == '"':
        return '\\"'
    # unicode_escape: \n \r \t \x1b \x00 \u202e ..., and a backslash doubled
    return char.encode("unicode_escape").decode("ascii")


def escape_controls(text: str) -> str:
    """Every non-printable character (str.isprintable: controls, line and paragraph separators,
    bidi and other format characters) as a backslash escape."""
    if text.isprintable():  # in C; almost every line takes only this branch
        return text
    return "".join(ch if ch.isprintable() else _escape_char(ch) for ch in text)


def escape_field(text: str) -> str:
    """A client-sent value, safe inside a double-quoted field of one log line."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return "".join(ch if ch.isprintable() and ch not in '"\\' else _escape_char(ch) for ch in text)


class EscapingFormatter(logging.Formatter):
    """One record, one line: control characters in the formatted message are escaped. The
    traceback and stack, which format() appends after this, are left multi-line."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return escape_controls(super().formatMessage(record))


def _record_with_request_id(*args, **kwargs) -> logging.LogRecord:
    # A record factory rather than a handler filter: every record carries the id, whichever handler
    # (ours, uvicorn's, a test's) formats it.
    record = _base_factory(*args, **kwargs)
    record.request_id = request_id_var.get()
    return record


def configure_logging() -> None:
    """One handler on the root logger; idempotent, so create_app() may run more than once (tests)."""
    logging.setLogRecordFactory(_record_with_request_id)
    root = logging.getLogger()
    root.setLevel(settings.LOG_LEVEL)
    if any(getattr(h, "_authservice", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler._authservice = True  # type: ignore[attr-defined]
    handler.setFormatter(EscapingFormatter(LOG_FORMAT))
    root.addHandler(handler)
