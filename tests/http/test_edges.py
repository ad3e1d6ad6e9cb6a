"""Issue items 2, 7, 8 and 10 over HTTP: hostile input is a 4xx problem, never a 500; only JSON bodies
reach a view; headers every response carries; access tokens typed at+jwt; log lines nobody can forge."""

from __future__ import annotations

import io
import logging
import re
import time

import jwt
import pytest

import settings
from apps.user.models import User
from tests.helpers import PASSWORD, assert_problem, bearer, register, unique

JSON = {"Content-Type": "application/json"}


def field_errors(body: dict) -> set[str]:
    return {e["field"] for e in body["errors"]}


async def staff_token(client) -> str:
    reg = await register(client)
    await User.filter(id=reg["user"]["id"]).update(is_staff=True)
    r = await client.post("/user/login", json={"username": reg["user"]["username"], "password": PASSWORD})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


# --- item 2: no unhandled 500s -----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"email": "a@example.com", "password": ' + b"1" * 5000 + b"}",  # past int()'s digit limit
        b'{"email": "a@example.com", "password": 1e999}',  # a float past the largest double
        b'{"email": "a@example.com", "password": NaN}',  # not JSON (RFC 8259), Python's extension
        b'{"email": "a@example.com", "password": -Infinity}',
        b'{"email": "a@example.com", "password": ' + b"[" * 20000 + b"]" * 20000 + b"}",  # nesting
        b'{"a": ' + b'{"a":' * 8000 + b"1" + b"}" * 8001,
    ],
    ids=["huge-int", "huge-float", "nan", "infinity", "deep-list", "deep-object"],
)
async def test_json_python_cannot_parse_is_400_not_500(client, body):
    assert len(body) <= settings.MAX_BODY_SIZE
    assert_problem(await client.post("/user/login", content=body, headers=JSON), 400, "malformed_body")


async def test_a_content_length_of_thousands_of_digits_is_413(client):
    r = await client.post("/user/login", content=b"{}", headers={**JSON, "Content-Length": "9" * 5000})
    assert_problem(r, 413, "payload_too_large")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/user/login", {"email": "a\x00@example.com", "password": PASSWORD}, "email"),
        ("/user/login", {"username": "ann\x00", "password": PASSWORD}, "username"),
        ("/user/login", {"username": "ann", "password": "pass\x00word-long"}, "password"),
        ("/user/refresh-token", {"refresh_token": "abc\x00def"}, "refresh_token"),
        (
            "/user/register",
            {"username": "nul\x00", "email": "n@example.com", "password": PASSWORD},
            "username",
        ),
        (
            "/user/register",
            {"username": unique(), "email": "n@example.com", "password": "a\x00" * 8},
            "password",
        ),
    ],
    ids=[
        "login-email",
        "login-username",
        "login-password",
        "refresh",
        "register-username",
        "register-password",
    ],
)
async def test_nul_in_any_string_field_is_422_naming_it(client, path, body, field):
    # PostgreSQL refuses NUL in text (asyncpg raised, a 500); SQLite stored it. Both now refuse it.
    problem = assert_problem(await client.post(path, json=body), 422, "validation_error")
    assert field_errors(problem) == {field}, problem


async def test_nul_in_authenticated_bodies_is_422(client):
    reg = await register(client)
    auth = bearer(reg["access_token"])
    r = await client.post(
        "/user/me/password", json={"current_password": "x\x00", "new_password": PASSWORD + "!"}, headers=auth
    )
    assert field_errors(assert_problem(r, 422)) == {"current_password"}
    r = await client.patch("/user/me", json={"username": "x\x00y"}, headers=auth)
    assert field_errors(assert_problem(r, 422)) == {"username"}


async def test_admin_query_refuses_nul_and_out_of_range_pages(client):
    staff = bearer(await staff_token(client))
    cases = [
        ({"search": "ann\x00"}, "search"),
        ({"page": str(10**30)}, "page"),
        ({"page": "9" * 5000}, "page"),
        ({"page": "-1"}, "page"),
        ({"page": "0"}, "page"),
        ({"page_size": "-1"}, "page_size"),
        ({"page_size": str(10**30)}, "page_size"),
        ({"page": "1e3"}, "page"),
    ]
    for params, field in cases:
        problem = assert_problem(await client.get("/admin/users", params=params, headers=staff), 422)
        assert field_errors(problem) == {field}, (params, problem)


async def test_the_last_allowed_page_is_answered_empty(client):
    from apps.user.schemas import MAX_PAGE, MAX_PAGE_SIZE

    staff = bearer(await staff_token(client))
    r = await client.get("/admin/users", params={"page": MAX_PAGE, "page_size": MAX_PAGE_SIZE}, headers=staff)
    assert r.status_code == 200, r.text
    assert r.json()["results"] == [] and r.json()["page"] == MAX_PAGE
    assert_problem(await client.get("/admin/users", params={"page": MAX_PAGE + 1}, headers=staff), 422)


def forge(header: dict | None = None, **changes) -> str:
    now = int(time.time())
    claims = {
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        "sub": "1",
        "sid": "9f1c4a3e-0000-4000-8000-000000000000",
        "jti": "j",
        "iat": now,
        "exp": now + 600,
        "token_type": "access",
        **changes,
    }
    return jwt.encode(claims, settings.SECRET_KEY, algorithm="HS256", headers=header or {"typ": "at+jwt"})


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": str(int(time.time()) + 600)},
        {"iat": "123"},
        {"nbf": "123"},
        {"iat": True},
        {"exp": 10**30},
        {"exp": float("nan")},
        {"iat": {"nested": [1]}},
        {"sub": "9" * 5000},
    ],
    ids=lambda value: repr(value)[:40],
)
async def test_tokens_with_malformed_numeric_claims_are_401(client, changes):
    r = await client.get("/user/me", headers=bearer(forge(**changes)))
    assert_problem(r, 401, "invalid_token")


# --- item 7: the JOSE header type -------------------------------------------------------------


async def test_an_access_token_needs_the_at_jwt_header_type(client):
    reg = await register(client)
    claims = jwt.decode(reg["access_token"], options={"verify_signature": False})
    assert jwt.get_unverified_header(reg["access_token"])["typ"] == "at+jwt"
    for header in ({"typ": "JWT"}, {}, {"typ": "jwt"}):
        token = jwt.encode(claims, settings.SECRET_KEY, algorithm="HS256", headers=header)
        if not header:  # PyJWT adds typ: JWT unless told otherwise
            token = jwt.encode(claims, settings.SECRET_KEY, algorithm="HS256", headers={"typ": None})
            assert "typ" not in jwt.get_unverified_header(token)
        r = await client.get("/user/me", headers=bearer(token))
        assert_problem(r, 401, "invalid_token")
    for typ in ("AT+JWT", "application/at+jwt"):
        token = jwt.encode(claims, settings.SECRET_KEY, algorithm="HS256", headers={"typ": typ})
        assert (await client.get("/user/me", headers=bearer(token))).status_code == 200


# --- item 8: media types, charsets, hosts, headers on every response ----------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/plain; charset=utf-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "application/merge-patch+json",
        "application/json; charset=iso-8859-1",
        "application/json; charset=utf-16",
    ],
)
async def test_a_body_not_declared_as_utf8_json_is_415_and_never_reaches_the_view(client, content_type):
    name = unique()
    body = f'{{"username": "{name}", "email": "{name}@example.com", "password": "{PASSWORD}"}}'.encode()
    headers = {"Content-Type": content_type} if content_type else {}
    r = await client.post("/user/register", content=body, headers=headers)
    assert_problem(r, 415, "unsupported_media_type")
    assert r.headers["accept-post"] == "application/json"
    # nothing was created: the same registration as JSON succeeds
    await register(client, username=name)
    r = await client.post("/user/login", content=body, headers=headers)
    assert_problem(r, 415, "unsupported_media_type")


async def test_patch_415_advertises_accept_patch(client):
    reg = await register(client)
    r = await client.patch(
        "/user/me",
        content=b"username=x",
        headers={**bearer(reg["access_token"]), "Content-Type": "text/plain"},
    )
    assert_problem(r, 415, "unsupported_media_type")
    assert r.headers["accept-patch"] == "application/json"


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        'application/json;charset="UTF-8"',
    ],
)
async def test_json_with_or_without_utf8_charset_is_taken(client, content_type):
    name = unique()
    body = f'{{"username": "{name}", "email": "{name}@example.com", "password": "{PASSWORD}"}}'.encode()
    r = await client.post("/user/register", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 201, r.text


async def test_a_content_coding_is_415(client):
    r = await client.post("/user/login", content=b"\x1f\x8b...", headers={**JSON, "Content-Encoding": "gzip"})
    assert_problem(r, 415, "unsupported_media_type")


async def test_only_utf8_json_is_read(client):
    name = unique()
    text = f'{{"username": "{name}", "email": "{name}@example.com", "password": "{PASSWORD}"}}'
    for body in (
        text.encode("utf-16"),  # json.loads(bytes) would detect and accept it
        text.encode("utf-32-le"),
        b"\xef\xbb\xbf" + text.encode(),  # a UTF-8 byte order mark
        text.encode()[:-2] + b'\xff"}',  # invalid UTF-8
        text.encode()[:-2] + b'\xed\xa0\x80"}',  # an encoded surrogate: not UTF-8
    ):
        assert_problem(await client.post("/user/register", content=body, headers=JSON), 400, "malformed_body")
    await register(client, username=name)  # none of them created the account


async def test_two_host_headers_are_refused(client):
    for hosts in (["testserver", "evil.example.com"], ["testserver", "testserver"]):
        r = await client.get("/user/me", headers=[("Host", h) for h in hosts])
        assert_problem(r, 400, "invalid_host")


async def test_nosniff_on_every_response(app, client, monkeypatch):
    from apps.user import accounts

    responses = [
        await client.get("/health"),
        await client.get("/no/such/path"),  # 404
        await client.delete("/health"),  # 405
        await client.get("/user/me"),  # 401
        await client.get("/user/me", headers={"Host": "evil.example.com"}),  # 400 host
        await client.options(  # CORS preflight
            "/user/login",
            headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"},
        ),
        await client.options(
            "/user/login", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        ),
    ]

    async def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(accounts, "login", explode)
    responses.append(await client.post("/user/login", json={"email": "a@example.com", "password": "x"}))
    assert [r.status_code for r in responses] == [200, 404, 405, 401, 400, 200, 400, 500]
    for r in responses:
        assert r.headers.get_list("x-content-type-options") == ["nosniff"], r.request.url


async def test_account_data_and_errors_are_no_store(client):
    reg = await register(client)
    auth = bearer(reg["access_token"])
    staff = bearer(await staff_token(client))
    uid = reg["user"]["id"]
    responses = [
        await client.get("/user/me", headers=auth),
        await client.patch("/user/me", json={"username": unique("p")}, headers=auth),
        await client.get("/admin/users", headers=staff),
        await client.get(f"/admin/users/{uid}", headers=staff),
        await client.patch(f"/admin/users/{uid}", json={"is_staff": False}, headers=staff),
        await client.post("/user/login", json={"username": "nobody", "password": "wrong-password"}),
        await client.get("/user/me"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 401, 401]
    for r in responses:
        assert r.headers.get_list("cache-control") == ["no-store"], r.request.url


# --- item 10: log lines ------------------------------------------------------------------------


@pytest.fixture
def access_lines(monkeypatch):
    """The access log's formatted output, one string; formatted plainly, so what is tested is what
    the middleware wrote, not what the root handler's formatter repairs."""
    monkeypatch.setattr(settings, "ACCESS_LOG", True)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("authservice.access")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.parametrize(
    ("raw", "logged"),
    [
        ("/%0d%0aINJECTED", r"/\r\nINJECTED"),
        ("/%0aFAKE 200 0.1ms", r"/\nFAKE 200 0.1ms"),
        ("/%1b[31mred", r"/\x1b[31mred"),
        ("/nul%00byte", r"/nul\x00byte"),
        ('/quote%22 200 1ms "x', r"/quote\" 200 1ms \"x"),
        ("/back%5cslash", r"/back\\slash"),
        ("/bidi%e2%80%aeevil", r"/bidi\u202eevil"),
        ("/line%e2%80%a8sep", r"/line\u2028sep"),
    ],
)
async def test_a_path_cannot_forge_or_split_an_access_line(client, access_lines, raw, logged):
    await client.get(raw)
    lines = access_lines.getvalue().splitlines()
    assert lines == [f'203.0.113.7 "GET {logged}" 404 ' + lines[0].rsplit(" ", 1)[-1]], lines
    assert lines[0].endswith("ms")


async def test_the_access_line_names_the_client(client, access_lines):
    await client.get("/health")
    # the format nginx's system test reads: client "METHOD path" status time
    line = access_lines.getvalue().removesuffix("\n")
    assert re.fullmatch(r'203\.0\.113\.7 "GET /health" 200 \d+\.\dms', line), line


async def test_the_root_formatter_keeps_any_record_on_one_line(app):
    # belt and braces: a message some other logger builds from client data stays one line
    from apps.core.logs import LOG_FORMAT, EscapingFormatter

    formatter = EscapingFormatter(LOG_FORMAT)
    record = logging.getLogger("other").makeRecord(
        "other", logging.WARNING, __file__, 1, "user said %s", ("hi\r\nFAKE ERROR \x1b[2J",), None
    )
    line = formatter.format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line.endswith(r"user said hi\r\nFAKE ERROR \x1b[2J")
    try:
        raise ValueError("x")
    except ValueError:
        import sys

        record = logging.getLogger("other").makeRecord(
            "other", logging.ERROR, __file__, 1, "a\nb", (), sys.exc_info()
        )
    text = formatter.format(record)
    assert text.splitlines()[0].endswith(r"a\nb") and "Traceback" in text.splitlines()[1]
    root_formatters = [h.formatter for h in logging.getLogger().handlers if getattr(h, "_authservice", False)]
    assert root_formatters and all(isinstance(f, EscapingFormatter) for f in root_formatters)


async def test_a_request_id_with_a_trailing_newline_is_not_echoed(app):
    # the old pattern ended in $, which matches before a final newline: "abc\n" was taken as an id
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/health",
        "raw_path": b"/health",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"x-request-id", b"abc\n")],
        "client": ("203.0.113.7", 1),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    headers = dict(sent[0]["headers"])
    assert sent[0]["status"] == 200
    assert headers[b"x-request-id"] != b"abc\n" and len(headers[b"x-request-id"]) == 32
