"""Logging with the request id on every line, so one request's lines can be found among many, and
one line per record whatever a client sends: nothing a client controls can forge or split a line.

Two formats (LOG_FORMAT). `text`, for people: `escape_field` renders a client-sent value (path,
method, address) for a log line: control and other non-printable characters as backslash escapes,
`"` and `\\` escaped, so a quoted field cannot be closed early. `EscapingFormatter`, on the root
handler, escapes any control character left in a formatted line, whoever logged it (belt and braces);
tracebacks, appended after the line, keep their own lines. `json`, for a log collector:
`JsonFormatter` writes one JSON object per line (the traceback a field of it); JSON's own escaping,
ASCII only, is what keeps a client's bytes inside their string.

Every record carries the request id, and inside a request the client IP and, once the access token
is verified, the user id (contextvars the middleware sets): the text format shows the request id, the
JSON format all three. No line carries a token, a password or a secret: the code logs none, and the
access line has the path without the query string (uvicorn's scope["path"]).
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime

import settings

# Set by middleware.RequestContextMiddleware for the duration of one request; "-" outside requests.
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")
# The client's address for the duration of a request (set beside the request id), None outside.
client_ip_var: ContextVar[str | None] = ContextVar("client_ip", default=None)
# Set by middleware.JWTAuthenticationBackend once a token is verified; reset with the request.
user_id_var: ContextVar[int | None] = ContextVar("user_id", default=None)

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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and the request's
    request_id, client_ip and user_id when known; the access line adds method, path, status and
    duration_ms (its `access` extra); a traceback is the `exception` field, inside the line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            # several workers write to one stream: which one said it
            "pid": record.process,
        }
        request_id = getattr(record, "request_id", "-")
        if request_id != "-":
            entry["request_id"] = request_id
        for name in ("client_ip", "user_id"):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        access = getattr(record, "access", None)
        if access:
            entry.update(access)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # ensure_ascii: every control character, and U+2028/U+2029 that some readers take for line
        # breaks, leaves as an escape; default=str: a stray object in a message's args cannot fail the line
        return json.dumps(entry, default=str)


def _record_with_request_context(*args, **kwargs) -> logging.LogRecord:
    # A record factory rather than a handler filter: every record carries the context, whichever
    # handler (ours, uvicorn's, a test's) formats it.
    record = _base_factory(*args, **kwargs)
    record.request_id = request_id_var.get()
    record.client_ip = client_ip_var.get()
    record.user_id = user_id_var.get()
    return record


def formatter() -> logging.Formatter:
    """The formatter LOG_FORMAT names."""
    return JsonFormatter() if settings.LOG_FORMAT == "json" else EscapingFormatter(LOG_FORMAT)


def configure_logging() -> None:
    """One handler on the root logger; idempotent, so create_app() may run more than once (tests).

    With LOG_FORMAT=json, uvicorn's own loggers (which do not propagate to the root) write through
    the same handler, so that every line a worker prints is JSON for the collector to parse.
    """
    logging.setLogRecordFactory(_record_with_request_context)
    root = logging.getLogger()
    root.setLevel(settings.LOG_LEVEL)
    handler = next((h for h in root.handlers if getattr(h, "_authservice", False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler._authservice = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setFormatter(formatter())
    if settings.LOG_FORMAT == "json":
        for name in ("uvicorn", "uvicorn.access"):
            uvicorn_logger = logging.getLogger(name)
            if uvicorn_logger.handlers:  # configured by uvicorn (not under pytest or manage.py)
                uvicorn_logger.handlers = [handler]
