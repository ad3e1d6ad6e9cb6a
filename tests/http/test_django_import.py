"""Issue 4, point 2: a Django user base moves over with one command and keeps its passwords; and
issue 8, point 2: allauth's verified addresses come with it.

The hashes are made by Django itself, into a real Django auth_user table (SQLite, and PostgreSQL
when TEST_DATABASE_URL is set), with every hasher in Django's default PASSWORD_HASHERS. allauth is
not installed: its `account_emailaddress` table is made by Django's schema editor from a model with
allauth's fields, which is what allauth's own migration makes.
"""

import asyncio
import functools
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid

import asyncpg
import pytest

from apps.user.models import Event, User
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


@functools.cache
def allauth_email_address():
    """allauth's EmailAddress model (allauth/account/models.py), its fields and table; made once
    Django is set up, as a model class needs its settings."""
    from django.contrib.auth.models import User as DjangoUser
    from django.db import models

    class EmailAddress(models.Model):
        user = models.ForeignKey(DjangoUser, on_delete=models.CASCADE)
        email = models.EmailField(max_length=254)
        verified = models.BooleanField(default=False)
        primary = models.BooleanField(default=False)

        class Meta:
            app_label = "account"
            db_table = "account_emailaddress"

    return EmailAddress


AllauthAddress = tuple[str, bool, bool]  # email, verified, primary
# username -> (email in auth_user, allauth's addresses of that user)
ALLAUTH_USERS: dict[str, tuple[str, list[AllauthAddress]]] = {
    # allauth keeps its own spelling of the address: compared after normalisation
    "aa_verified": ("AA.Verified@Example.COM", [("aa.verified@example.com", True, True)]),
    "aa_unverified": ("aa_unverified@example.com", [("aa_unverified@example.com", False, True)]),
    # a verified address that is not the account's email proves nothing about the email
    "aa_other": (
        "aa_other@example.com",
        [("aa_other@example.com", False, True), ("aa_other_second@example.com", True, False)],
    ),
    "aa_norow": ("aa_norow@example.com", []),
    "aa_later": ("aa_later@example.com", [("aa_later@example.com", False, True)]),
    "aa_mover": ("aa_mover@example.com", [("aa_mover@example.com", True, True)]),
}
ALLAUTH_VERIFIED = {"aa_verified", "aa_mover"}


def build_allauth_users(alias: str) -> None:
    """A Django project with allauth: auth_user by Django's migrate, account_emailaddress by Django's
    schema editor, the users and their addresses by Django's model layer."""
    from django.contrib.auth.models import User as DjangoUser
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", "auth", database=alias, verbosity=0)
    email_address = allauth_email_address()
    with connections[alias].schema_editor() as editor:
        editor.create_model(email_address)
    for username, (email, addresses) in ALLAUTH_USERS.items():
        user = DjangoUser.objects.db_manager(alias).create_user(username, email, f"{username}-password")
        for address, verified, primary in addresses:
            email_address.objects.using(alias).create(
                user=user, email=address, verified=verified, primary=primary
            )


@pytest.fixture(scope="session")
def django_databases(tmp_path_factory):
    """Django projects built by Django itself, per backend: plain Django ({"sqlite": url, "postgres":
    url}) and with allauth's email addresses ({"sqlite+allauth": url, "postgres+allauth": url})."""
    import django
    from django.conf import settings as django_settings

    directory = tmp_path_factory.mktemp("django")
    databases = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(directory / "django.sqlite3")},
        "allauth": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(directory / "allauth.sqlite3")},
    }
    urls = {
        "sqlite": f"sqlite://{directory / 'django.sqlite3'}",
        "sqlite+allauth": f"sqlite://{directory / 'allauth.sqlite3'}",
    }
    pg_base = os.environ.get("TEST_DATABASE_URL")
    pg_names = {"pg": f"django_{uuid.uuid4().hex[:10]}", "allauth_pg": f"allauth_{uuid.uuid4().hex[:10]}"}
    if pg_base:

        async def create():
            admin = await asyncpg.connect(pg_base.replace("postgres://", "postgresql://", 1))
            for name in pg_names.values():
                await admin.execute(f'CREATE DATABASE "{name}"')
            await admin.close()

        asyncio.run(create())
        from urllib.parse import urlsplit

        parts = urlsplit(pg_base)
        for alias, name in pg_names.items():
            databases[alias] = {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": name,
                "HOST": parts.hostname,
                "PORT": parts.port or 5432,
                "USER": parts.username or "postgres",
                "PASSWORD": parts.password or "",
            }
        urls["postgres"] = postgres_url_for(pg_base, pg_names["pg"])
        urls["postgres+allauth"] = postgres_url_for(pg_base, pg_names["allauth_pg"])
    if not django_settings.configured:
        django_settings.configure(
            DATABASES=databases,
            INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
            USE_TZ=True,
        )
        django.setup()
    build_django_users("default")
    build_allauth_users("allauth")
    if pg_base:
        build_django_users("pg")
        build_allauth_users("allauth_pg")
    yield urls
    if pg_base:
        from django.db import connections

        connections.close_all()

        async def drop():
            admin = await asyncpg.connect(pg_base.replace("postgres://", "postgresql://", 1))
            for name in pg_names.values():
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
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
    # no allauth: Django never proved an address
    assert "No allauth email addresses (account_emailaddress) in the source" in report, report
    assert not await User.filter(username__startswith="dj_", email_verified=True).exists()
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

    # an address proven here, as a verification link does
    await User.filter(username="dj_argon2").update(email_verified=True)

    # again: nothing duplicated; the hashes upgraded here, the logins and the verification here are kept
    again = import_users(database_url, "--database-url", django_url)
    assert "13 Django users: 0 imported, 0 updated, 8 unchanged, 5 skipped." in again, again
    assert await User.filter(username__startswith="dj_").count() == len(HASHERS)
    assert (await User.get(username="dj_scrypt")).password.startswith("$argon2id$")
    assert (await User.get(username="dj_argon2")).email_verified

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


async def allauth_verified_usernames() -> set[str]:
    accounts = await User.filter(username__in=list(ALLAUTH_USERS))
    assert len(accounts) == len(ALLAUTH_USERS)
    return {account.username for account in accounts if account.email_verified}


async def test_allauth_verified_addresses_import_as_verified_emails(
    database_url, backend, django_databases, tmp_path
):
    """Verified iff allauth verified the very address imported as the account's email; from the
    database and from a dump alike; a re-import adds verification and never takes it from an address
    that stays the account's."""
    django_url = django_databases[f"{backend}+allauth"]
    alias = "allauth" if backend == "sqlite" else "allauth_pg"

    report = import_users(database_url, "--database-url", django_url)
    assert "6 Django users: 6 imported, 0 updated, 0 unchanged, 0 skipped." in report, report
    assert "2 imported and 0 updated with their email verified (allauth)" in report, report
    assert await allauth_verified_usernames() == ALLAUTH_VERIFIED

    # dumpdata auth.user account.emailaddress: by id, and by natural key (--natural-foreign) with
    # the addresses written before their users
    for natural, addresses_first in ((False, False), (True, True)):
        await User.filter(username__in=list(ALLAUTH_USERS)).delete()
        dump = tmp_path / f"allauth-{natural}.json"
        await asyncio.to_thread(dump_allauth_users, alias, dump, natural, addresses_first)
        from_json = import_users(database_url, "--json", str(dump))
        assert "6 Django users: 6 imported, 0 updated, 0 unchanged, 0 skipped." in from_json, from_json
        assert "2 imported and 0 updated with their email verified (allauth)" in from_json, from_json
        assert await allauth_verified_usernames() == ALLAUTH_VERIFIED, natural

    # in Django: aa_later verifies its address; aa_verified's is unverified again; aa_mover changes
    # its email to a new, unverified address (allauth keeps the old one, verified, not primary)
    await asyncio.to_thread(change_allauth_users, alias)
    again = import_users(database_url, "--database-url", django_url)
    assert "6 Django users: 0 imported, 2 updated, 4 unchanged, 0 skipped." in again, again
    assert "0 imported and 1 updated with their email verified (allauth)" in again, again
    assert await allauth_verified_usernames() == {"aa_later", "aa_verified"}
    assert (await User.get(username="aa_mover")).email == "aa_mover_new@example.com"
    later = await User.get(username="aa_later")
    assert await Event.filter(user_id=later.id, type="email_verified").exists()


def dump_allauth_users(alias, path, natural: bool, addresses_first: bool) -> None:
    """What `manage.py dumpdata auth.user account.emailaddress` writes (dumpdata serialises with
    this very serializer; it cannot name an app that is not installed)."""
    from django.contrib.auth.models import User as DjangoUser
    from django.core import serializers

    users = DjangoUser.objects.using(alias).order_by("id")
    addresses = allauth_email_address().objects.using(alias).order_by("id")
    records = itertools.chain(addresses, users) if addresses_first else itertools.chain(users, addresses)
    with open(path, "w") as out:
        serializers.serialize("json", records, stream=out, use_natural_foreign_keys=natural)
    assert ('"user": ["aa_verified"]' in path.read_text()) is natural


def change_allauth_users(alias) -> None:
    from django.contrib.auth.models import User as DjangoUser

    addresses = allauth_email_address().objects.using(alias)
    addresses.filter(email="aa_later@example.com").update(verified=True)
    addresses.filter(email="aa.verified@example.com").update(verified=False)
    mover = DjangoUser.objects.using(alias).get(username="aa_mover")
    mover.email = "aa_mover_new@example.com"
    mover.save(using=alias)
    addresses.filter(user=mover).update(primary=False)
    addresses.create(user=mover, email=mover.email, verified=False, primary=True)


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
