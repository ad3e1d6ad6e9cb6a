"""Issue 4, point 5: OpenAPI 3.1 from the views' own schemas, true to what the server answers."""

import os
import re
import subprocess
import sys

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate

import settings
from app import API_VERSION, create_app
from apps.core.openapi import openapi_schema
from apps.user import accounts, keys, links
from apps.user.models import User
from tests.helpers import PASSWORD, ROOT, bearer, live_server, register, unique


@pytest.fixture
def docs_app(monkeypatch, database_url):
    monkeypatch.setattr(settings, "API_DOCS", True)
    return create_app(settings.tortoise_config(database_url))


@pytest.fixture
def document(app):
    return openapi_schema(app.routes, title="authservice", version=API_VERSION)


async def test_served_document_is_valid_openapi_3_1(docs_app, document):
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=docs_app), base_url="http://testserver"
    ) as c:
        served = (await c.get("/openapi.json")).json()
    assert served == document
    assert served["openapi"] == "3.1.0"
    validate(served)  # openapi-spec-validator, OpenAPI 3.1 rules
    assert served["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }


async def test_every_route_is_documented(app, document):
    documented = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    routed = {
        (method, re.sub(r"{(\w+)(:\w+)?}", r"{\1}", route.path))
        for route in app.routes
        for method in (getattr(route, "methods", None) or set()) - {"HEAD"}
    }
    assert routed == documented
    me = document["paths"]["/user/me"]["get"]
    assert me["security"] == [{"bearerAuth": []}] and "401" in me["responses"]
    register_op = document["paths"]["/user/register"]["post"]
    assert register_op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RegisterIn"
    }
    assert {"201", "400", "409", "413", "422"} <= set(register_op["responses"])
    assert "403" in document["paths"]["/admin/users"]["get"]["responses"]


TOKEN_ROUTES = (
    "/user/register",
    "/user/login",
    "/user/login/mfa",
    "/user/login/passkey",
    "/user/refresh-token",
)


async def test_the_cookie_transport_is_in_the_document(document):
    """A generated client can choose the cookie transport, send the cookie refresh's `{}` and read a
    browser's answer (no refresh token) without casts; the passwordless options need no body."""
    schemas = document["components"]["schemas"]
    for path in TOKEN_ROUTES:
        op = document["paths"][path]["post"]
        (header,) = [p for p in op["parameters"] if p["in"] == "header"]
        assert header["name"] == "X-Token-Transport" and header["schema"]["enum"] == ["cookie"]
        assert not header["required"]
        success = next(code for code in op["responses"] if code.startswith("2"))
        answers = op["responses"][success]["content"]["application/json"]["schema"]["anyOf"]
        assert {"$ref": "#/components/schemas/BrowserTokenOut"} in answers, path
        assert "403" in op["responses"]  # csrf_failed
    assert "refresh_token" not in schemas["BrowserTokenOut"]["properties"]
    refresh_body = document["paths"]["/user/refresh-token"]["post"]["requestBody"]["content"]
    assert refresh_body["application/json"]["schema"]["anyOf"] == [
        {"$ref": "#/components/schemas/RefreshIn"},
        {"$ref": "#/components/schemas/CookieRefreshIn"},
    ]
    assert schemas["CookieRefreshIn"]["properties"] == {}
    assert schemas["CookieRefreshIn"]["additionalProperties"] is False
    assert document["paths"]["/user/login/passkey/options"]["post"]["requestBody"]["required"] is False
    for path in ("/user/me", "/user/logout"):  # not a token route: no transport to choose
        assert "parameters" not in next(iter(document["paths"][path].values()))


async def test_docs_page_works_offline(docs_app):
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=docs_app), base_url="http://testserver"
    ) as c:
        page = await c.get("/docs")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert assets and all(a.startswith("/docs/static/") for a in assets), assets  # nothing from a CDN
        for asset in assets:
            r = await c.get(asset)
            assert r.status_code == 200 and len(r.content) > 1000, asset


async def test_docs_are_off_unless_enabled(client):
    # the suite's app runs with DEBUG and API_DOCS off
    assert (await client.get("/openapi.json")).status_code == 404
    assert (await client.get("/docs")).status_code == 404


def _operation(document, method: str, path: str):
    for template, ops in document["paths"].items():
        pattern = "^" + re.sub(r"{\w+}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in ops:
            return template, ops[method.lower()]
    return None, None


async def test_every_response_matches_its_documented_schema(app, document, monkeypatch):
    """Drive every operation through its success and typical errors; check each answer against the doc."""
    seen: list[httpx.Response] = []

    async def record(response):
        await response.aread()
        seen.append(response)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", event_hooks={"response": [record]}
    ) as c:
        await c.get("/health")
        await c.get("/ready")
        await c.get("/.well-known/change-password")
        await c.get("/.well-known/jwks.json")  # 404: HS256, nothing to publish
        reg = await register(c)
        user_auth = bearer(reg["access_token"])
        await c.post(
            "/user/register",
            json={"username": reg["user"]["username"], "email": reg["user"]["email"], "password": PASSWORD},
        )  # 409
        await c.post("/user/register", content=b"{", headers={"Content-Type": "application/json"})  # 400
        await c.post("/user/register", json={"username": "x"})  # 422
        await c.post("/user/login", json={"email": reg["user"]["email"], "password": "wrong-password"})  # 401
        await c.post(
            "/user/login",
            content=b"x" * (settings.MAX_BODY_SIZE + 1),
            headers={"Content-Type": "application/json"},
        )  # 413
        await c.post("/user/login", content=b"email=a&password=b")  # 415
        pair = (
            await c.post("/user/login", json={"email": reg["user"]["email"], "password": PASSWORD})
        ).json()
        await c.post("/user/refresh-token", json={"refresh_token": pair["refresh_token"]})
        await c.post("/user/refresh-token", json={"refresh_token": "spent-or-unknown"})  # 401
        await c.get("/user/me", headers=user_auth)
        await c.get("/user/me")  # 401
        await c.get("/user/verify", headers=user_auth)
        await c.post("/user/email/verification", headers=user_auth)  # 202
        account = await User.get(id=reg["user"]["id"])
        await c.post("/user/email/verify", json={"token": links.make(links.VERIFY, account)})  # 200
        await c.post("/user/email/verify", json={"token": "spent"})  # 400
        await c.post("/user/email/verification", headers=user_auth)  # 409: verified, nothing pending
        await c.post(
            "/user/me/email",
            json={"email": f"{unique()}@example.com", "password": PASSWORD},
            headers=user_auth,
        )  # 202
        await c.post("/user/password/reset", json={"email": reg["user"]["email"]})  # 202
        await c.post("/user/password/reset/confirm", json={"token": "bad", "new_password": PASSWORD})  # 400
        # the login above is a second session of the account
        sessions = (await c.get("/user/sessions", headers=user_auth)).json()
        elsewhere = next(row["id"] for row in sessions if not row["current"])
        await c.delete(f"/user/sessions/{elsewhere}", headers=user_auth)
        await c.delete(f"/user/sessions/{elsewhere}", headers=user_auth)  # 404: ended already
        await c.patch("/user/me", json={"username": unique("p")}, headers=user_auth)
        await c.post(
            "/user/me/password",
            json={"current_password": PASSWORD, "new_password": "Another-Passw0rd"},
            headers=user_auth,
        )
        await c.get("/admin/users", headers=user_auth)  # 403
        staff_name = unique("st")
        await accounts.create_user(staff_name, f"{staff_name}@example.com", PASSWORD, is_staff=True)
        staff = bearer(
            (await c.post("/user/login", json={"username": staff_name, "password": PASSWORD})).json()[
                "access_token"
            ]
        )
        victim = await register(c)
        vid = victim["user"]["id"]
        await c.get("/admin/users", params={"search": victim["user"]["username"]}, headers=staff)
        await c.get("/admin/users", params={"page": "0"}, headers=staff)  # 422
        await c.get(f"/admin/users/{vid}", headers=staff)
        await c.get("/admin/users/999999999", headers=staff)  # 404
        await c.patch(f"/admin/users/{vid}", json={"is_staff": True}, headers=staff)
        await c.get(f"/admin/users/{vid}/sessions", headers=staff)
        await c.get("/admin/events", params={"user_id": vid, "type": "login"}, headers=staff)
        await c.get("/admin/events", params={"type": "no_such_type"}, headers=staff)  # 422
        await c.delete(f"/admin/users/{vid}/sessions", headers=staff)
        await c.delete(f"/admin/users/{vid}/mfa", headers=staff)
        await c.delete("/admin/users/999999999/mfa", headers=staff)  # 404
        await c.delete(f"/admin/users/{vid}", headers=staff)
        await c.get("/user/events", headers=user_auth)
        await c.get("/user/events", params={"page_size": "0"}, headers=user_auth)  # 422
        await c.post("/user/logout", headers=user_auth)
        await c.post("/user/logout-all", headers=bearer(victim["access_token"]))
        reset = links.make(links.RESET, await User.get(id=reg["user"]["id"]))
        await c.post(
            "/user/password/reset/confirm", json={"token": reset, "new_password": "Reset-Passw0rd-x"}
        )  # 204
        other = await register(c)
        await c.request(
            "DELETE", "/user/me", json={"password": PASSWORD}, headers=bearer(other["access_token"])
        )
        await _exercise_second_factors(c, monkeypatch)
    # the cookie transport's answers (a browser: https, so the Secure cookie is kept and sent back)
    async with httpx.AsyncClient(
        transport=transport, base_url="https://testserver", event_hooks={"response": [record]}
    ) as browser:
        cookie_mode = {"X-Token-Transport": "cookie", "Origin": "https://testserver"}
        account = await register(browser)
        login = {"email": account["user"]["email"], "password": PASSWORD}
        await browser.post("/user/login", json=login, headers=cookie_mode)
        await browser.post("/user/refresh-token", json={}, headers=cookie_mode)
        await browser.post("/user/login", json=login, headers={"X-Token-Transport": "cookie"})  # 403 csrf
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", event_hooks={"response": [record]}
    ) as c:
        # last, as it changes how tokens are signed: the JWK Set of each key type, and a fallback
        for algorithm in ("EdDSA", "ES256", "RS256"):
            monkeypatch.setattr(settings, "JWT_ALGORITHM", algorithm)
            monkeypatch.setattr(settings, "JWT_PRIVATE_KEY", keys.generate_private_key(algorithm))
            monkeypatch.setattr(settings, "JWT_PRIVATE_KEY_FALLBACKS", [keys.generate_private_key(algorithm)])
            await c.get("/.well-known/jwks.json")

    exercised = set()
    for response in seen:
        method, path = response.request.method, response.request.url.path
        template, op = _operation(document, method, path)
        assert op is not None, f"{method} {path} is not documented"
        status = str(response.status_code)
        assert status in op["responses"], (
            f"{method} {path} answered {status}, documented: {list(op['responses'])}"
        )
        exercised.add((method, template))
        documented = op["responses"][status]
        if response.status_code in (204, 302):
            assert response.content == b""
            continue
        media_type = response.headers["content-type"].split(";")[0]
        assert media_type in documented["content"], (method, path, status, media_type)
        schema = {**documented["content"][media_type]["schema"], "components": document["components"]}
        jsonschema.validate(response.json(), schema, cls=jsonschema.Draft202012Validator)
    every = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert exercised == every, every - exercised


async def _exercise_second_factors(c: httpx.AsyncClient, monkeypatch) -> None:
    """TOTP, recovery codes, passkeys and the second step of a login: success and typical errors."""
    import pyotp

    from tests.authenticator import ORIGIN, RP_ID, SoftwareAuthenticator

    monkeypatch.setattr(settings, "WEBAUTHN_RP_ID", RP_ID)
    monkeypatch.setattr(settings, "WEBAUTHN_ORIGINS", [ORIGIN])
    account = await register(c)
    auth = bearer(account["access_token"])
    secret = (await c.post("/user/mfa/totp/setup", json={"password": PASSWORD}, headers=auth)).json()[
        "secret"
    ]
    await c.post("/user/mfa/totp/setup", json={"password": "wrong-password"}, headers=auth)  # 422
    await c.post("/user/mfa/totp/confirm", json={"code": "000000x"}, headers=auth)  # 401
    codes = (
        await c.post("/user/mfa/totp/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=auth)
    ).json()["recovery_codes"]
    codes = (
        await c.post("/user/mfa/recovery-codes", json={"password": PASSWORD, "code": codes[0]}, headers=auth)
    ).json()["recovery_codes"]
    login = {"email": account["user"]["email"], "password": PASSWORD}
    mfa_token = (await c.post("/user/login", json=login)).json()["mfa_token"]
    await c.post("/user/login/mfa", json={"mfa_token": mfa_token, "code": "000000"})  # 401
    await c.post("/user/login/mfa", json={"mfa_token": mfa_token, "recovery_code": codes[0]})
    await c.request("DELETE", "/user/mfa/totp", json={"password": PASSWORD, "code": codes[1]}, headers=auth)

    authenticator = SoftwareAuthenticator()
    options = (await c.post("/user/passkeys/register/options", headers=auth)).json()
    created = await c.post("/user/passkeys", json={"credential": authenticator.create(options)}, headers=auth)
    await c.post("/user/passkeys", json={"credential": authenticator.create(options)}, headers=auth)  # 400
    again = authenticator.create(
        (await c.post("/user/passkeys/register/options", headers=auth)).json(),
        again=authenticator.credentials[0],
    )
    await c.post("/user/passkeys", json={"credential": again}, headers=auth)  # 409
    path = f"/user/passkeys/{created.json()['id']}"
    await c.get("/user/passkeys", headers=auth)
    await c.patch(path, json={"name": "Phone"}, headers=auth)
    await c.patch("/user/passkeys/999999999", json={"name": "Phone"}, headers=auth)  # 404
    await c.post("/user/passkeys/reauth/options", headers=auth)
    options = (await c.post("/user/login/passkey/options")).json()
    await c.post("/user/login/passkey", json={"credential": authenticator.get(options)})
    await c.post("/user/login/passkey", json={"credential": authenticator.get(options)})  # 401: used
    mfa_token = (await c.post("/user/login", json=login)).json()["mfa_token"]
    options = (await c.post("/user/login/passkey/options", json={"mfa_token": mfa_token})).json()
    await c.post("/user/login/mfa", json={"mfa_token": mfa_token, "passkey": authenticator.get(options)})
    await c.post("/user/login/passkey/options", json={"mfa_token": "spent"})  # 401
    await c.request("DELETE", path, json={"password": "wrong-password"}, headers=auth)  # 422
    await c.request("DELETE", path, json={"password": PASSWORD}, headers=auth)
    await c.post("/user/passkeys/reauth/options", headers=auth)  # 409: none left


@pytest.fixture
def docs_server(database_url, tmp_path):
    with live_server(database_url, tmp_path, env={"API_DOCS": "true"}) as base:
        yield base


def test_schemathesis_finds_no_server_error_and_no_schema_violation(docs_server, database_url, tmp_path):
    name = unique("fuzz")
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SUPERUSER_USERNAME": name,
        "DJANGO_SUPERUSER_EMAIL": f"{name}@example.com",
        "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
    }
    created = subprocess.run(
        [sys.executable, "manage.py", "createsuperuser", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert created.returncode == 0, created.stderr
    login = httpx.post(docs_server + "/user/login", json={"username": name, "password": PASSWORD})
    common = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{docs_server}/openapi.json",
        "--checks",
        "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
        "--max-examples",
        "25",
        "--seed",
        "1",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--header",
        f"Authorization: Bearer {login.json()['access_token']}",
    ]
    # First with the operations that could end the fuzzer's own session left out, so every other one is
    # explored authenticated; then everything, destructive operations included.
    keep_session = [
        "--exclude-operation-id",
        "logout",
        "--exclude-operation-id",
        "delete_me",
        "--exclude-operation-id",
        "user_update",
        "--exclude-operation-id",
        "user_delete",
        "--exclude-operation-id",
        "user_sessions_end",
        "--exclude-operation-id",
        "session_delete",
        "--exclude-operation-id",
        "logout_all",
    ]
    for extra in (keep_session, []):
        result = subprocess.run(common + extra, cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        assert "Authentication failed" not in result.stdout or not extra, result.stdout[-3000:]
