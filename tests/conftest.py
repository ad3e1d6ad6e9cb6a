"""Test harness: the real ASGI app over HTTP (httpx), on a real database, migrated by manage.py.

Every test runs once on SQLite and, when TEST_DATABASE_URL points at a PostgreSQL server, once more
on a fresh PostgreSQL database created for the run (and dropped after it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

# Settings are read at import: fix the environment first, whatever a developer's .env says.
os.environ.update(
    SECRET_KEY="test-" + secrets.token_urlsafe(48),
    DEBUG="false",
    ALLOWED_HOSTS="testserver,localhost,127.0.0.1",
    CORS_ALLOWED_ORIGINS="http://localhost:5173",
    DATABASE_URL="sqlite://:memory:",
    LOG_LEVEL="INFO",
)

import asyncpg  # noqa: E402
import httpx  # noqa: E402
import pytest  # noqa: E402
from tortoise.backends.base.executor import EXECUTOR_CACHE  # noqa: E402

import settings  # noqa: E402
from app import create_app  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Corr3ct-Horse-Battery"


def _postgres_url_for(base_url: str, database: str) -> str:
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def migrate(database_url: str) -> None:
    """Apply the migrations the way an operator does, through manage.py."""
    env = {**os.environ, "DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session", params=BACKENDS)
async def database_url(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
        migrate(url)
        yield url
        return
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.skip("TEST_DATABASE_URL is not set: the PostgreSQL run is skipped (.ci/run sets it)")
    name = f"authtest_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(base.replace("postgres://", "postgresql://", 1))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = _postgres_url_for(base, name)
        migrate(url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
def backend(database_url) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


@pytest.fixture(scope="session")
async def app(database_url):
    # Tortoise caches each model's INSERT/DELETE SQL per connection *name* for the life of the process;
    # this suite switches one name from SQLite to PostgreSQL, so the cache must not outlive a backend.
    EXECUTOR_CACHE.clear()
    application = create_app(settings.tortoise_config(database_url))
    async with application.router.lifespan_context(application):
        yield application
    EXECUTOR_CACHE.clear()


@pytest.fixture
async def client(app):
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@contextlib.contextmanager
def live_server(database_url: str, log_dir: Path, *uvicorn_args: str, env: dict[str, str] | None = None):
    """The service as an operator runs it: `uvicorn app:app` in its own process; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    full_env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ACCESS_LOG": "false",
        "REVOCATION_EPOCH_FILE": str(log_dir / f"epoch-{port}"),
        **(env or {}),
    }
    with open(log_dir / f"server-{port}.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app:app",
                "--port",
                str(port),
                "--no-access-log",
                *uvicorn_args,
            ],
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(base + "/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            yield base
        finally:
            proc.terminate()
            proc.wait(20)


def unique(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def register(
    client, username: str | None = None, email: str | None = None, password: str = PASSWORD
) -> dict:
    username = username or unique()
    email = email or f"{username}@example.com"
    r = await client.post("/user/register", json={"username": username, "email": email, "password": password})
    assert r.status_code == 201, r.text
    return {**r.json(), "password": password}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers["content-type"]
    body = r.json()
    assert body["status"] == status and body["title"] and body["type"] == "about:blank", body
    if code is not None:
        assert body["code"] == code, body
    return body
