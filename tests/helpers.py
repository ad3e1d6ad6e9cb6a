"""Helpers every test module shares, written once: accounts, requests, problem checks, live servers.

Fixtures live in conftest.py; this module holds plain functions so tests can import them by name.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Corr3ct-Horse-Battery"


def postgres_url_for(base_url: str, database: str) -> str:
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@contextlib.asynccontextmanager
async def fresh_postgres_database(base_url: str, prefix: str):
    """A new PostgreSQL database on `base_url`'s server, migrated by manage.py; dropped afterwards."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(base_url.replace("postgres://", "postgresql://", 1))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = postgres_url_for(base_url, name)
        migrate(url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def migrate(database_url: str) -> None:
    """Apply the migrations the way an operator does, through manage.py."""
    env = {**os.environ, "DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen | None = None, log: Path | None = None, timeout=30.0):
    """Poll `url` until it answers 200; fail loudly (with the server's output) if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    output = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
    raise AssertionError(f"{url} never answered 200 within {timeout:.0f} s:\n{output}")


@contextlib.contextmanager
def live_server(database_url: str, log_dir: Path, *uvicorn_args: str, env: dict[str, str] | None = None):
    """The service as an operator runs it: `uvicorn app:app` in its own process; yields its base URL."""
    port = free_port()
    full_env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ACCESS_LOG": "false",
        "REVOCATION_EPOCH_FILE": str(log_dir / f"epoch-{port}"),
        **(env or {}),
    }
    log_path = log_dir / f"server-{port}.log"
    with open(log_path, "wb") as log:
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
            wait_until_up(base + "/health", proc, log_path)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:  # a shutdown that hangs fails the test, and ends here
                proc.kill()
                proc.wait()
                raise


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


def django_hash(password: str, hasher: str) -> str:
    """A hash made by Django's own make_password, as found in a Django project's auth_user table."""
    import django
    from django.conf import settings as django_settings

    if not django_settings.configured:
        django_settings.configure()
        django.setup()
    from django.contrib.auth.hashers import make_password

    return make_password(password, hasher=hasher)


async def user_with_hash(password_hash: str, *, is_active: bool = True):
    """An account whose password column holds `password_hash` as is (imported, legacy or unusable)."""
    from apps.user.models import User, username_key

    name = unique()
    return await User.create(
        username=name,
        username_key=username_key(name),
        email=f"{name}@example.com",
        password=password_hash,
        is_active=is_active,
    )


async def logged_in_account(client, *, is_staff: bool = False, is_superuser: bool = False) -> dict:
    """An account made as manage.py makes one (accounts.create_user), logged in: the token response
    and the account's id."""
    from apps.user import accounts

    name = unique("s")
    user = await accounts.create_user(
        name, f"{name}@example.com", PASSWORD, is_staff=is_staff, is_superuser=is_superuser
    )
    r = await client.post("/user/login", json={"username": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {**r.json(), "id": user.id}
