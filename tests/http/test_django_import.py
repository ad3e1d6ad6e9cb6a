"""Issue 4, point 2: a Django user base moves over with one command and keeps its passwords.

The hashes are made by Django itself, into a real Django auth_user table (SQLite, and PostgreSQL
when TEST_DATABASE_URL is set), with every hasher in Django's default PASSWORD_HASHERS.
"""

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid

import asyncpg
import pytest

from apps.user.models import User
from tests.helpers import ROOT, assert_problem, bearer, postgres_url_for

HASHERS = ["pbkdf2_sha256", "pbkdf2_sha1", "argon2", "bcrypt_sha256", "scrypt"]


def password_for(hasher: str) -> str:
    return f"pw-{hasher}-secret"


def build_django_users(alias: str) -> None:
    """Django's own migrate and model layer make auth_user and its users."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User as DjangoUser
    from django.core.management import call_command

    call_command("migrate", "auth", database=alias, verbosity=0)
    users = DjangoUser.objects.db_manager(alias)
    for hasher in HASHERS:
        users.create(
            username=f"dj_{hasher}",
            email=f"dj_{hasher}@example.com",
            password=make_password(password_for(hasher), hasher=hasher),
        )
    # Django compares case-sensitively; here these pairs are one name, one address: never merged
    users.create_user("Bob", "bob1@example.com", "bob-password-1")
    users.create_user("bob", "bob2@example.com", "bob-password-2")
    users.create_user("carol1", "Carol@Example.com", "carol-password-1")
    users.create_user("carol2", "carol@example.com", "carol-password-2")
    users.create_user("noemail", "", "noemail-password")
    nopass = users.create_user("nopass", "nopass@example.com")
    nopass.set_unusable_password()
    nopass.save(using=alias)
    users.create_user("sleeper", "sleeper@example.com", "sleeper-password", is_active=False)
    users.create_user("djstaff", "djstaff@example.com", "djstaff-password", is_staff=True)


@pytest.fixture(scope="session")
def django_databases(tmp_path_factory):
    """One Django project per backend: {"sqlite": url, "postgres": url}, built by Django itself."""
    import django
    from django.conf import settings as django_settings

    sqlite_path = tmp_path_factory.mktemp("django") / "django.sqlite3"
    databases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(sqlite_path)}}
    urls = {"sqlite": f"sqlite://{sqlite_path}"}
    pg_base = os.environ.get("TEST_DATABASE_URL")
    pg_name = f"django_{uuid.uuid4().hex[:10]}"
    if pg_base:

        async def create():
            admin = await asyncpg.connect(pg_base.replace("postgres://", "postgresql://", 1))
            await admin.execute(f'CREATE DATABASE "{pg_name}"')
            await admin.close()

        asyncio.run(create())
        from urllib.parse import urlsplit

        parts = urlsplit(pg_base)
        databases["pg"] = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": pg_name,
            "HOST": parts.hostname,
            "PORT": parts.port or 5432,
            "USER": parts.username or "postgres",
            "PASSWORD": parts.password or "",
        }
        urls["postgres"] = postgres_url_for(pg_base, pg_name)
    if not django_settings.configured:
        django_settings.configure(
            DATABASES=databases,
            INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
            USE_TZ=True,
        )
        django.setup()
    build_django_users("default")
    if pg_base:
        build_django_users("pg")
    yield urls
    if pg_base:
        from django.db import connections

        connections.close_all()

        async def drop():
            admin = await asyncpg.connect(pg_base.replace("postgres://", "postgresql://", 1))
            await admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
            await admin.close()

        asyncio.run(drop())


def import_users(database_url, *args):
    result = subprocess.run(
        [sys.executable, "manage.py", "import_django_users", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


async def test_django_users_import_and_log_in_with_their_passwords(
    client, database_url, backend, django_databases, tmp_path
):
    django_url = django_databases[backend]

    dry = import_users(database_url, "--database-url", django_url, "--dry-run")
    assert "13 Django users: 8 would be imported, 0 would be updated, 0 unchanged, 5 skipped." in dry
    assert not await User.filter(username__startswith="dj_").exists()

    report = import_users(database_url, "--database-url", django_url)
    assert "13 Django users: 8 imported, 0 updated, 0 unchanged, 5 skipped." in report, report
    for reason in (
        "username equals that of Django user id",
        "email equals that of Django user id",
        "no email",
    ):
        assert reason in report
    assert not await User.filter(username__in=["Bob", "bob", "carol1", "carol2", "noemail"]).exists()

    for hasher in HASHERS:
        before = (await User.get(username=f"dj_{hasher}")).password
        assert not before.startswith("$argon2id$v=19$m=19456"), before
        r = await client.post(
            "/user/login", json={"username": f"dj_{hasher}", "password": password_for(hasher)}
        )
        assert r.status_code == 200, (hasher, r.text)
        after = (await User.get(username=f"dj_{hasher}")).password
        assert after.startswith("$argon2id$v=19$m=19456,t=2,p=1$"), (hasher, after)
        wrong = await client.post(
            "/user/login", json={"username": f"dj_{hasher}", "password": "not-the-password"}
        )
        assert_problem(wrong, 401)

    for password in ("", "!", "x" * 12):
        r = await client.post("/user/login", json={"username": "nopass", "password": password})
        assert_problem(r, 401, "invalid_credentials")
    assert_problem(
        await client.post("/user/login", json={"username": "sleeper", "password": "sleeper-password"}), 401
    )
    staff = (
        await client.post("/user/login", json={"username": "djstaff", "password": "djstaff-password"})
    ).json()
    assert (await client.get("/admin/users", headers=bearer(staff["access_token"]))).status_code == 200

    # again: nothing duplicated; the hashes upgraded here and the logins here are kept
    again = import_users(database_url, "--database-url", django_url)
    assert "13 Django users: 0 imported, 0 updated, 8 unchanged, 5 skipped." in again, again
    assert await User.filter(username__startswith="dj_").count() == len(HASHERS)
    assert (await User.get(username="dj_scrypt")).password.startswith("$argon2id$")

    # the same users from `manage.py dumpdata auth.user` are recognised as the same accounts
    dump = tmp_path / "users.json"
    await asyncio.to_thread(dump_users, "default" if backend == "sqlite" else "pg", dump)
    from_json = import_users(database_url, "--json", str(dump))
    assert "13 Django users: 0 imported, 0 updated, 8 unchanged, 5 skipped." in from_json, from_json


def dump_users(alias, path):
    from django.core.management import call_command

    with open(path, "w") as out:
        call_command("dumpdata", "auth.user", database=alias, stdout=out)
    assert json.loads(path.read_text())[0]["model"] == "auth.user"


def test_unreadable_source_is_a_clear_error(tmp_path, database_url):
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "import_django_users",
            "--database-url",
            f"sqlite://{tmp_path / 'missing.sqlite3'}",
        ],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "CommandError: cannot read the Django users" in result.stderr
    assert "Traceback" not in result.stderr


def test_four_slash_sqlite_url_names_an_absolute_path(database_url, django_databases):
    """The README's form: sqlite:////abs/path, as Django and dj-database-url write it."""
    path = django_databases["sqlite"].removeprefix("sqlite://")
    assert path.startswith("/")
    for url in (f"sqlite:///{path}", f"sqlite://{path}"):  # four slashes, then three
        dry = import_users(database_url, "--database-url", url, "--dry-run")
        assert "13 Django users:" in dry, dry


BULK = 20_000
# Django's hashers outside its default PASSWORD_HASHERS: none verifies here
UNVERIFIABLE = {
    "md5": "md5$somesalt$2d5c9bbcd8fc5bd0c3c4ba5d1c4f25a3",
    "unsalted_md5": "5f4dcc3b5aa765d61d8327deb882cf99",
    "unsalted_md5_prefixed": "md5$$5f4dcc3b5aa765d61d8327deb882cf99",
    "unsalted_sha1": "sha1$$5baa61e4c9b93f3f0682250b6cf8331b7ee68fd8",
    "crypt": "crypt$$abN/qM.L/H8EQ",
    "bcrypt": "bcrypt$$2b$12$abcdefghijklmnopqrstuuQf5e3oXyQvLzXq6G3yNn1h2Y9b1bS6W",
}
HASHER_NAMES = {"unsalted_md5_prefixed": "unsalted_md5"}


def build_bulk_django_database(path, prefix: str) -> None:
    """auth_user with 20,000 users and one of each unverifiable hasher, written directly (Django's
    hasher per user would take minutes): every bulk user shares one precomputed PBKDF2 hash."""
    from django.contrib.auth.hashers import make_password

    shared = make_password("bulk-password", hasher="pbkdf2_sha256")
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE auth_user (id integer PRIMARY KEY AUTOINCREMENT, password varchar(128),"
            " last_login datetime NULL, is_superuser bool, username varchar(150) UNIQUE,"
            " first_name varchar(150), last_name varchar(150), email varchar(254), is_staff bool,"
            " is_active bool, date_joined datetime)"
        )
        rows = [(f"{prefix}{i}", f"{prefix}{i}@example.com", shared) for i in range(BULK)]
        rows += [(f"{prefix}{name}", f"{prefix}{name}@example.com", h) for name, h in UNVERIFIABLE.items()]
        db.executemany(
            "INSERT INTO auth_user (username, email, password, last_login, is_superuser, first_name,"
            " last_name, is_staff, is_active, date_joined)"
            " VALUES (?, ?, ?, NULL, 0, '', '', 0, 1, '2020-01-02 03:04:05')",
            rows,
        )


async def test_a_large_user_base_imports_in_batches_with_progress_and_unverifiable_hashes_reported(
    client, database_url, tmp_path
):
    prefix = f"bulk{uuid.uuid4().hex[:6]}x"
    path = tmp_path / "bulk.sqlite3"
    await asyncio.to_thread(build_bulk_django_database, path, prefix)
    total = BULK + len(UNVERIFIABLE)

    started = time.monotonic()
    report = await asyncio.to_thread(import_users, database_url, "--database-url", f"sqlite:///{path}")
    elapsed = time.monotonic() - started
    assert f"{total} Django users: {total} imported, 0 updated, 0 unchanged, 0 skipped." in report, report
    progress = [line for line in report.splitlines() if line.startswith("imported ")]
    assert (
        f"imported 5000/{total} Django users" in progress
        and progress[-1] == f"imported {total}/{total} Django users"
    )
    assert len(progress) >= 4, report
    assert elapsed < 60, elapsed
    assert await User.filter(username__startswith=prefix).count() == total

    # each unverifiable hash: reported by username and hasher, imported with an unusable password
    assert f"{len(UNVERIFIABLE)} imported with an unusable password" in report, report
    for name, stored in UNVERIFIABLE.items():
        assert f"{prefix}{name} ({HASHER_NAMES.get(name, name)})" in report, (name, report)
        user = await User.get(username=f"{prefix}{name}")
        assert user.password.startswith("!") and stored not in user.password
        r = await client.post("/user/login", json={"username": user.username, "password": "password"})
        assert_problem(r, 401, "invalid_credentials")
    r = await client.post("/user/login", json={"username": f"{prefix}19999", "password": "bulk-password"})
    assert r.status_code == 200, r.text

    # again: nothing changes, the unusable passwords included
    again = await asyncio.to_thread(import_users, database_url, "--database-url", f"sqlite:///{path}")
    assert f"{total} Django users: 0 imported, 0 updated, {total} unchanged, 0 skipped." in again, again
