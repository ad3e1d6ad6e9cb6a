"""Logging with the request id on every line, so one request's lines can be found among many."""

from __future__ import annotations

import logging
from contextvars import ContextVar

import settings

# Set by middleware.RequestContextMiddleware for the duration of one request; "-" outside requests.
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging() -> None:
    """One handler on the root logger; idempotent, so create_app() may run more than once (tests)."""
    root = logging.getLogger()
    root.setLevel(settings.LOG_LEVEL)
    if any(getattr(h, "_authservice", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler._authservice = True  # type: ignore[attr-defined]
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
