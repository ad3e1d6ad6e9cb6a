"""Logging with the request id on every line, so one request's lines can be found among many."""

from __future__ import annotations

import logging
from contextvars import ContextVar

import settings

# Set by middleware.RequestContextMiddleware for the duration of one request; "-" outside requests.
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

_base_factory = logging.getLogRecordFactory()


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
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
