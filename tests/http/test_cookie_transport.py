"""The cookie transport for browsers (apps/user/transport.py, issue 11 points 1 and 2): the refresh
token only in an HttpOnly, Secure, SameSite=Strict cookie scoped to the refresh route, never in a
body; CSRF refused without the custom header or from another origin; credentialed CORS for the
listed origins only; two tabs refreshing with one cookie stay logged in (the grace window) while a
replay after it still ends the session; the bearer transport unchanged beside it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest

import settings
from apps.user import sessions
from apps.user.models import RefreshToken
from tests.helpers import PASSWORD, assert_problem, bearer, unique

SPA = "http://localhost:5173"  # CORS_ALLOWED_ORIGINS in tests/conftest.py
COOKIE = "__Secure-refresh_token"
BROWSER = {"X-Token-Transport": "cookie", "Origin": SPA}


@pytest.fixture
async def browser(app):
    """A browser's view of the API: https (Secure cookies are kept), its cookie jar."""
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        yield c


async def browser_register(browser) -> dict:
    name = unique()
    r = await browser.post(
        "/user/register",
        json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
        headers=BROWSER,
    )
    assert r.status_code == 201, r.text
    return r


def refresh_cookie(r: httpx.Response) -> str:
    (header,) = [h for h in r.headers.get_list("set-cookie") if h.startswith(COOKIE + "=")]
    return header


async def test_the_refresh_token_is_only_in_an_httponly_strict_cookie_on_the_refresh_path(browser):
    r = await browser_register(browser)
    assert "refresh_token" not in r.json() and r.json()["access_token"]
    header = refresh_cookie(r).lower()
    for attribute in ("httponly", "secure", "samesite=strict", "path=/user/refresh-token", "max-age="):
        assert attribute in header, header
    assert r.headers["cache-control"] == "no-store"
    # the cookie goes to the refresh route only
    r = await browser.get("/user/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    assert COOKIE not in r.request.headers.get("cookie", "")


async def test_a_refresh_reads_the_cookie_rotates_it_and_answers_no_refresh_token(browser):
    first = refresh_cookie(await browser_register(browser))
    r = await browser.post("/user/refresh-token", json={}, headers=BROWSER)
    assert r.status_code == 200, r.text
    assert "refresh_token" not in r.json()
    assert refresh_cookie(r) != first
    assert (await browser.get("/user/me", headers=bearer(r.json()["access_token"]))).status_code == 200


async def test_cookie_requests_without_the_header_or_from_another_origin_are_refused(browser):
    await browser_register(browser)
    # a cross-site form post: no custom header, another origin, a form body
    r = await browser.post(
        "/user/refresh-token",
        content=b"refresh_token=x",
        headers={"Origin": "https://evil.example", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code in (415, 422) and COOKIE not in r.headers.get("set-cookie", "")
    # the header, but from an origin that is not allowed
    r = await browser.post(
        "/user/refresh-token", json={}, headers={**BROWSER, "Origin": "https://evil.example"}
    )
    assert_problem(r, 403, "csrf_failed")
    # no Origin at all
    r = await browser.post("/user/refresh-token", json={}, headers={"X-Token-Transport": "cookie"})
    assert_problem(r, 403, "csrf_failed")
    # the service's own origin is fine (the SPA served at /)
    r = await browser.post(
        "/user/refresh-token", json={}, headers={**BROWSER, "Origin": "https://testserver"}
    )
    assert r.status_code == 200, r.text


async def test_a_refused_cookie_login_opens_no_session(browser, client):
    name = unique()
    await client.post(
        "/user/register", json={"username": name, "email": f"{name}@e.com", "password": PASSWORD}
    )
    r = await browser.post(
        "/user/login",
        json={"username": name, "password": PASSWORD},
        headers={**BROWSER, "Origin": "https://evil.example"},
    )
    assert_problem(r, 403, "csrf_failed")
    assert "set-cookie" not in r.headers


async def test_credentialed_cors_for_listed_origins_only(browser):
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-token-transport",
    }
    r = await browser.options("/user/refresh-token", headers={"Origin": SPA, **preflight})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == SPA
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "x-token-transport" in r.headers["access-control-allow-headers"].lower()
    r = await browser.options("/user/refresh-token", headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in r.headers


async def test_two_tabs_refreshing_at_once_stay_logged_in(browser):
    await browser_register(browser)
    cookie = browser.cookies.get(COOKIE)
    browser.cookies.clear()  # each request below names the cookie itself
    # two tabs share one cookie jar: both send the same cookie at once
    answers = await asyncio.gather(
        *(
            browser.post("/user/refresh-token", json={}, headers=BROWSER, cookies={COOKIE: cookie})
            for _ in range(3)
        )
    )
    assert [r.status_code for r in answers] == [200, 200, 200], [r.text for r in answers]
    new = {refresh_cookie(r).split(";")[0] for r in answers}
    assert len(new) == 1  # every tab got the same new cookie
    browser.cookies.clear()
    r = await browser.post(
        "/user/refresh-token", json={}, headers=BROWSER, cookies={COOKIE: new.pop().split("=", 1)[1]}
    )
    assert r.status_code == 200, r.text  # and it works


async def test_a_cookie_replayed_after_the_grace_window_ends_the_session(browser, monkeypatch):
    await browser_register(browser)
    stolen = browser.cookies.get(COOKIE)
    r = await browser.post("/user/refresh-token", json={}, headers=BROWSER)
    assert r.status_code == 200
    current = browser.cookies.get(COOKIE)
    browser.cookies.clear()
    # the spent token's use moved back past the window
    past = timedelta(seconds=settings.REFRESH_TOKEN_REUSE_GRACE + 1)
    row = await RefreshToken.get(digest=sessions.tokens.refresh_token_digest(stolen))
    await RefreshToken.filter(id=row.id).update(used_at=row.used_at - past)
    r = await browser.post("/user/refresh-token", json={}, headers=BROWSER, cookies={COOKIE: stolen})
    assert_problem(r, 401, "invalid_refresh_token")
    r = await browser.post("/user/refresh-token", json={}, headers=BROWSER, cookies={COOKIE: current})
    assert_problem(r, 401, "invalid_refresh_token")  # the whole session ended


async def test_a_late_tab_gets_the_newest_token_down_the_chain(browser):
    await browser_register(browser)
    first = browser.cookies.get(COOKIE)
    await browser.post("/user/refresh-token", json={}, headers=BROWSER)  # first -> second
    r = await browser.post("/user/refresh-token", json={}, headers=BROWSER)  # second -> third
    assert r.status_code == 200
    third = browser.cookies.get(COOKIE)
    browser.cookies.clear()
    # `first`'s successor is spent: presenting `first` again is theft, even within the window
    r = await browser.post("/user/refresh-token", json={}, headers=BROWSER, cookies={COOKIE: first})
    assert r.status_code == 200  # within the window, down the chain: the newest unspent token
    assert browser.cookies.get(COOKIE) == third


async def test_the_bearer_transport_has_no_grace(client):
    name = unique()
    r = await client.post(
        "/user/register", json={"username": name, "email": f"{name}@e.com", "password": PASSWORD}
    )
    old = r.json()["refresh_token"]
    r = await client.post("/user/refresh-token", json={"refresh_token": old})
    new = r.json()["refresh_token"]
    assert_problem(await client.post("/user/refresh-token", json={"refresh_token": old}), 401)
    assert_problem(await client.post("/user/refresh-token", json={"refresh_token": new}), 401)


async def test_logout_clears_the_cookie(browser):
    r = await browser_register(browser)
    access = r.json()["access_token"]
    r = await browser.post("/user/logout", headers={**BROWSER, **bearer(access)})
    assert r.status_code == 204
    header = refresh_cookie(r).lower()
    assert "max-age=0" in header or "expires=thu, 01 jan 1970" in header, header


async def test_debug_on_plain_localhost_relaxes_secure_only_there(app, monkeypatch):
    monkeypatch.setattr(settings, "DEBUG", True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        name = unique()
        r = await c.post(
            "/user/register",
            json={"username": name, "email": f"{name}@e.com", "password": PASSWORD},
            headers={"X-Token-Transport": "cookie", "Origin": "http://localhost"},
        )
        (header,) = r.headers.get_list("set-cookie")
        assert header.startswith("refresh_token=") and "secure" not in header.lower()
    monkeypatch.setattr(settings, "DEBUG", False)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        name = unique()
        r = await c.post(
            "/user/register",
            json={"username": name, "email": f"{name}@e.com", "password": PASSWORD},
            headers={"X-Token-Transport": "cookie", "Origin": "http://localhost"},
        )
        assert "secure" in r.headers["set-cookie"].lower()


async def test_a_token_spent_by_a_bearer_client_gets_no_grace_through_the_cookie_transport(client, browser):
    """A stolen bearer refresh token replayed with the cookie transport's header is a replay: the
    grace needs the successor sealed by a browser's refresh."""
    name = unique()
    r = await client.post(
        "/user/register", json={"username": name, "email": f"{name}@e.com", "password": PASSWORD}
    )
    old = r.json()["refresh_token"]
    new = (await client.post("/user/refresh-token", json={"refresh_token": old})).json()["refresh_token"]
    browser.cookies.clear()
    r = await browser.post("/user/refresh-token", json={}, headers=BROWSER, cookies={COOKIE: old})
    assert_problem(r, 401, "invalid_refresh_token")
    assert "set-cookie" not in r.headers
    assert_problem(
        await client.post("/user/refresh-token", json={"refresh_token": new}), 401
    )  # session ended


async def test_a_refresh_cookie_sent_twice_is_refused(browser):
    await browser_register(browser)
    mine = browser.cookies.get(COOKIE)
    browser.cookies.clear()
    planted = {"Cookie": f"{COOKIE}=planted-by-a-sibling; {COOKIE}={mine}"}
    r = await browser.post("/user/refresh-token", json={}, headers={**BROWSER, **planted})
    assert_problem(r, 403, "csrf_failed")


async def test_no_grace_when_it_is_off(browser, monkeypatch):
    monkeypatch.setattr(settings, "REFRESH_TOKEN_REUSE_GRACE", 0)
    await browser_register(browser)
    cookie = browser.cookies.get(COOKIE)
    browser.cookies.clear()
    answers = await asyncio.gather(
        *(
            browser.post("/user/refresh-token", json={}, headers=BROWSER, cookies={COOKIE: cookie})
            for _ in range(2)
        )
    )
    assert sorted(r.status_code for r in answers) == [200, 401]
