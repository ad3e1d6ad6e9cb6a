"""Point 8: one problem+json shape for every error, and nothing internal leaks."""

import logging

import pytest

import settings
from apps.user import accounts, authentication
from tests.helpers import PASSWORD, assert_problem, logged_in_account, register, unique


async def test_malformed_json_is_400(client):
    r = await client.post(
        "/user/register", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_problem(r, 400, "malformed_body")


@pytest.mark.parametrize("body", [b"[]", b'"text"', b"null", b"", b"\xff\xfe"])
async def test_body_that_is_not_a_json_object_is_400(client, body):
    r = await client.post("/user/login", content=body, headers={"Content-Type": "application/json"})
    assert_problem(r, 400, "malformed_body")


async def test_validation_names_every_bad_field(client):
    r = await client.post(
        "/user/register", json={"username": "bad name!", "email": "nope", "password": "short"}
    )
    body = assert_problem(r, 422, "validation_error")
    assert {e["field"] for e in body["errors"]} == {"username", "email", "password"}
    assert all(e["message"] for e in body["errors"])


async def test_missing_fields_are_named(client):
    body = assert_problem(await client.post("/user/register", json={}), 422)
    assert {e["field"] for e in body["errors"]} == {"username", "email", "password"}


async def test_unknown_fields_are_422_and_change_nothing(client):
    name = unique()
    r = await client.post(
        "/user/register",
        json={"username": name, "email": f"{name}@example.com", "password": PASSWORD, "is_staff": True},
    )
    body = assert_problem(r, 422)
    assert body["errors"] == [{"field": "is_staff", "message": "Extra inputs are not permitted"}]
    # nothing was created: the same registration without the extra field succeeds
    await register(client, username=name)


async def test_oversize_body_is_413_by_declared_length(client, monkeypatch):
    monkeypatch.setattr(settings, "MAX_BODY_SIZE", 2048)
    r = await client.post("/user/login", json={"email": "a@example.com", "password": "x" * 4000})
    assert_problem(r, 413, "payload_too_large")


async def test_oversize_body_is_413_when_streamed_without_length(client, monkeypatch):
    monkeypatch.setattr(settings, "MAX_BODY_SIZE", 2048)

    async def chunks():
        for _ in range(10):
            yield b"x" * 1024

    r = await client.post("/user/login", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in r.request.headers
    assert_problem(r, 413, "payload_too_large")


async def test_server_error_is_problem_without_trace_or_sql(client, monkeypatch, caplog):
    async def explode(*args, **kwargs):
        raise RuntimeError('SELECT "password" FROM "user_user" WHERE secret')

    monkeypatch.setattr(accounts, "login", explode)
    with caplog.at_level(logging.INFO):
        r = await client.post("/user/login", json={"email": "a@example.com", "password": "whatever"})
    body = assert_problem(r, 500, "server_error")
    assert "SELECT" not in r.text and "Traceback" not in r.text and "traceback" not in body
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "unhandled RuntimeError" in logged
    assert "SELECT" not in logged and not any(record.exc_info for record in caplog.records)


async def test_debug_shows_the_traceback(client, monkeypatch):
    async def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(accounts, "login", explode)
    monkeypatch.setattr(settings, "DEBUG", True)
    r = await client.post("/user/login", json={"email": "a@example.com", "password": "whatever"})
    body = assert_problem(r, 500)
    assert "RuntimeError: boom" in "".join(body["traceback"])


async def test_unreachable_database_is_503_with_retry_after(client, monkeypatch):
    async def unreachable(*args, **kwargs):
        raise ConnectionRefusedError("connect call failed ('127.0.0.1', 5432)")

    monkeypatch.setattr(accounts, "authenticate", unreachable)
    r = await client.post("/user/login", json={"email": "a@example.com", "password": "whatever"})
    assert_problem(r, 503, "service_unavailable")
    assert r.headers["retry-after"] == "5"
    assert "5432" not in r.text


async def test_a_session_lookup_that_cannot_reach_the_database_is_a_503_a_browser_can_read(
    client, monkeypatch
):
    account = await logged_in_account(client)
    authenticator = authentication.authenticator()
    authenticator.forget_all()  # not cached: the request must look its session up

    async def unreachable(*args, **kwargs):
        raise ConnectionRefusedError("connect call failed ('127.0.0.1', 5432)")

    monkeypatch.setattr(authenticator, "load_session", unreachable)
    origin = "http://localhost:5173"  # CORS_ALLOWED_ORIGINS (conftest)
    r = await client.get(
        "/user/me", headers={"Authorization": f"Bearer {account['access_token']}", "Origin": origin}
    )
    assert_problem(r, 503, "service_unavailable")
    assert r.headers["retry-after"] == "5" and "5432" not in r.text
    # from inside the CORS layer: the SPA reads the 503 and its Retry-After, not a CORS failure
    assert r.headers["access-control-allow-origin"] == origin
    assert "retry-after" in r.headers["access-control-expose-headers"].lower()


async def test_unknown_host_is_refused_as_problem(client):
    r = await client.get("/user/me", headers={"Host": "evil.example.com"})
    assert_problem(r, 400, "invalid_host")


@pytest.mark.parametrize(
    "host", ["evil.example.com\\@localhost", "x@localhost", "localhost#@evil.example.com", "localhost:abc"]
)
async def test_a_host_header_only_a_loose_parser_would_read_as_allowed_is_refused(client, host):
    """urlsplit takes all of these for "localhost"; a browser reads the first as evil.example.com."""
    assert_problem(await client.get("/user/me", headers={"Host": host}), 400, "invalid_host")


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:8000", "127.0.0.1:8000", "localhost."])
async def test_allowed_hosts_in_their_usual_spellings_pass(client, host):
    assert (await client.get("/health", headers={"Host": host})).status_code == 200


async def test_cors_allows_only_listed_origins(client):
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    ok = await client.options("/user/login", headers={"Origin": "http://localhost:5173", **preflight})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "http://localhost:5173"
    # credentialed for the listed origins: the cookie transport's refresh (apps/user/transport.py)
    assert ok.headers["access-control-allow-credentials"] == "true"
    bad = await client.options("/user/login", headers={"Origin": "https://evil.example.com", **preflight})
    assert_problem(bad, 400, "cors_rejected")
    assert "access-control-allow-origin" not in bad.headers
