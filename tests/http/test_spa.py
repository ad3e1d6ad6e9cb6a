"""The web app served beside the API (apps/core/spa.py): hashed assets immutable, the page no-cache
under a strict Content-Security-Policy, client-side routes answered with the page for a browser and
with the API's 404 for anyone else, nothing outside the build reachable, and a page that says how to
build when there is no build. A build of the test's own (a few files), not the real frontend."""

from __future__ import annotations

import httpx
import pytest

import settings
from app import create_app
from tests.helpers import assert_problem

HTML = {"Accept": "text/html,application/xhtml+xml"}


def spa_client(monkeypatch, dist) -> httpx.AsyncClient:
    monkeypatch.setattr(settings, "FRONTEND_DIST", dist)
    app = create_app(
        settings.tortoise_config("sqlite://:memory:")
    )  # no lifespan: no route here needs the database
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
def dist(tmp_path):
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(
        '<!doctype html><script type="module" src="/assets/app-3f2a1c.js"></script>'
    )
    (tmp_path / "assets" / "app-3f2a1c.js").write_text("console.log('app')")
    (tmp_path / "favicon.ico").write_bytes(b"\0\0\1\0")
    (tmp_path.parent / "secret.txt").write_text("outside the build")
    return tmp_path


async def test_hashed_assets_are_immutable_and_the_page_is_not_cached(monkeypatch, dist):
    async with spa_client(monkeypatch, dist) as c:
        r = await c.get("/assets/app-3f2a1c.js")
        assert r.status_code == 200 and r.headers["cache-control"] == "public, max-age=31536000, immutable"
        r = await c.get("/", headers=HTML)
        assert r.status_code == 200 and "app-3f2a1c.js" in r.text
        assert r.headers["cache-control"] == "no-cache"
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
        assert r.headers["referrer-policy"] == "no-referrer"
        assert (await c.get("/favicon.ico")).headers["cache-control"] == "public, max-age=3600"


async def test_client_routes_get_the_page_in_a_browser_and_404_otherwise(monkeypatch, dist):
    async with spa_client(monkeypatch, dist) as c:
        for path in ("/login", "/verify-email?token=abc", "/settings/password"):
            r = await c.get(path, headers=HTML)
            assert r.status_code == 200 and "app-3f2a1c.js" in r.text, path
        assert_problem(await c.get("/no/such/route"), 404)  # a JSON client: the API's answer
        assert_problem(await c.post("/login", json={}, headers=HTML), 404)
        assert_problem(await c.get("/assets/missing.js"), 404)
        # the API's routes are the API's, whatever the Accept
        r = await c.get("/user/me", headers=HTML)
        assert_problem(r, 401)


async def test_nothing_outside_the_build_is_served(monkeypatch, dist):
    async with spa_client(monkeypatch, dist) as c:
        for path in (
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/assets/../../secret.txt",
            "/index.html/../../secret.txt",
        ):
            r = await c.get(path, headers=HTML)
            assert "outside the build" not in r.text, path


async def test_without_a_build_the_api_works_and_the_root_says_how_to_build(monkeypatch, tmp_path):
    async with spa_client(monkeypatch, tmp_path / "missing") as c:
        r = await c.get("/", headers=HTML)
        assert r.status_code == 200 and "make run" in r.text
        assert_problem(await c.get("/login", headers=HTML), 404)
        assert_problem(await c.get("/"), 404)
        assert (await c.get("/health")).status_code == 200
