"""LOG_FORMAT=json (issue 9, point 5): one JSON object per line, with the request id, client IP and user
id of the request it belongs to, and never a token or a password."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest

import settings
from apps.core import logs
from tests.helpers import PASSWORD, bearer, register


@pytest.fixture
def json_lines():
    """What the root logger writes through a JsonFormatter while the test runs, line by line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: stream.getvalue().splitlines()
    finally:
        root.removeHandler(handler)


async def test_a_request_s_lines_carry_its_id_client_and_user(client, json_lines):
    account = await register(client)
    token = account["access_token"]
    r = await client.get("/user/me", headers={**bearer(token), "X-Request-ID": "trace-json-1"})
    assert r.status_code == 200
    await client.post("/user/login", json={"email": account["user"]["email"], "password": "Wrong-passw0rd"})

    lines = json_lines()
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    me = next(e for e in entries if e.get("request_id") == "trace-json-1")
    assert me["logger"] == "authservice.access" and me["level"] == "INFO"
    assert me["client_ip"] == "203.0.113.7"  # the ASGI peer (the suite's client address)
    assert me["user_id"] == account["user"]["id"]
    assert (me["method"], me["path"], me["status"]) == ("GET", "/user/me", 200)
    assert me["duration_ms"] >= 0 and me["time"].endswith("+00:00") and isinstance(me["pid"], int)
    # anonymous requests have no user id; outside requests there is no request id either
    register_line = next(e for e in entries if e.get("path") == "/user/register")
    assert "user_id" not in register_line and register_line["request_id"]
    # no token, no password, in any line
    output = "\n".join(lines)
    assert token not in output and account["refresh_token"] not in output
    assert PASSWORD not in output and "Wrong-passw0rd" not in output


async def test_the_user_id_does_not_outlive_its_request(client, json_lines):
    account = await register(client)
    await client.get("/user/me", headers=bearer(account["access_token"]))
    await client.get("/health", headers={"X-Request-ID": "after-the-user"})
    health = next(json.loads(line) for line in json_lines() if "after-the-user" in line)
    assert "user_id" not in health and logs.user_id_var.get() is None


FORGED = 'evil\n{"level": "CRITICAL"}\u2028\x1b'  # a line break, a fake record, a separator, an escape


def test_one_record_one_line_whatever_it_holds():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, FORGED, (), None)
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = logs.JsonFormatter().format(record)
    assert "\n" not in line and "\u2028" not in line and "\x1b" not in line
    entry = json.loads(line)
    assert entry["message"] == FORGED and entry["level"] == "WARNING"
    assert "ValueError: boom" in entry["exception"]


def test_log_format_json_puts_the_json_formatter_on_the_service_handler(monkeypatch):
    monkeypatch.setattr(settings, "LOG_FORMAT", "json")
    logs.configure_logging()
    try:
        ours = [h for h in logging.getLogger().handlers if getattr(h, "_authservice", False)]
        assert len(ours) == 1 and isinstance(ours[0].formatter, logs.JsonFormatter)
    finally:
        monkeypatch.undo()
        logs.configure_logging()
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_authservice", False)]
    assert isinstance(ours[0].formatter, logs.EscapingFormatter)
