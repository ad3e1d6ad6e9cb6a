"""Issue item 9: look-alike usernames are refused (Unicode TR39 skeleton), and login by email accepts
every spelling registration normalises (IDN punycode, NFD)."""

import asyncio
import os
import sqlite3
import subprocess
import sys
import unicodedata
import uuid

import asyncpg
import pytest

from apps.user.models import User
from apps.user.usernames import SIMILAR
from tests.helpers import PASSWORD, ROOT, assert_problem, bearer, migrate, postgres_url_for, register, unique

SIMILAR_ERROR = {"field": "username", "message": SIMILAR}


def tag() -> str:
    # letters only, none of which confusables.txt maps, so each test's names are its own
    return "".join("qwxyz"[int(c, 16) % 5] for c in uuid.uuid4().hex[:12])


async def try_register(client, username, email=None):
    return await client.post(
        "/user/register",
        json={"username": username, "email": email or f"{unique()}@example.com", "password": PASSWORD},
    )


@pytest.mark.parametrize(
    ("name", "look_alike"),
    [
        ("admin", "\u0430dmin"),  # Cyrillic а
        ("admin", "adm\u0131n"),  # Turkish dotless ı
        ("admin", "\u0410DMIN"),  # Cyrillic А, other case: case-insensitive like the unique key
        ("admin", "adrnin"),  # r n for m
        ("paypal", "\u0440\u0430\u0443\u0440\u0430l"),  # mixed scripts: Cyrillic р а у р а, Latin l
        ("oscar", "\u03bfscar"),  # Greek omicron
        ("bill1", "billl"),  # digit one and small L
    ],
)
async def test_a_look_alike_of_a_taken_username_is_refused(client, name, look_alike):
    suffix = tag()
    await register(client, name + suffix)
    r = await try_register(client, look_alike + suffix)
    body = assert_problem(r, 409, "conflict")
    assert body["errors"] == [SIMILAR_ERROR], body
    assert not await User.filter(username=look_alike + suffix).exists()


async def test_the_taken_username_keeps_its_message_and_distinct_names_pass(client):
    suffix = tag()
    taken = await register(client, "admin" + suffix)
    r = await try_register(client, "ADMIN" + suffix)
    assert assert_problem(r, 409)["errors"] == [
        {"field": "username", "message": "This username is already taken."}
    ]
    # both fields named when the email is taken too, as for a taken username
    r = await try_register(client, "\u0430dmin" + suffix, email=taken["user"]["email"].upper())
    assert [e["field"] for e in assert_problem(r, 409)["errors"]] == ["username", "email"]
    # not look-alikes: an accent is a visible difference
    await register(client, "ädmin" + suffix)
    await register(client, "admins" + suffix)


async def test_racing_look_alikes_cannot_both_register(client):
    suffix = tag()
    results = await asyncio.gather(
        *(
            try_register(client, name + suffix)
            for name in ["admin", "\u0430dmin", "adm\u0131n", "\u0430dm\u0131n"]
        )
    )
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409], [r.text for r in results]
    for r in results:
        if r.status_code == 409:
            assert assert_problem(r, 409)["errors"] == [SIMILAR_ERROR], r.text


async def test_a_look_alike_never_logs_in_and_the_exact_name_does(client):
    suffix = tag()
    await register(client, "admin" + suffix)
    r = await client.post("/user/login", json={"username": "\u0430dmin" + suffix, "password": PASSWORD})
    assert_problem(r, 401, "invalid_credentials")
    r = await client.post("/user/login", json={"username": "ADMIN" + suffix, "password": PASSWORD})
    assert r.status_code == 200, r.text


async def test_renaming_to_a_look_alike_is_refused(client):
    suffix = tag()
    await register(client, "admin" + suffix)
    other = await register(client, "other" + suffix)
    headers = bearer(other["access_token"])
    r = await client.patch("/user/me", json={"username": "adm\u0131n" + suffix}, headers=headers)
    assert assert_problem(r, 409)["errors"] == [SIMILAR_ERROR]
    # the account's own name in another case, or a look-alike of its own name, is its own
    r = await client.patch("/user/me", json={"username": "OTHER" + suffix}, headers=headers)
    assert r.status_code == 200, r.text
    r = await client.patch("/user/me", json={"username": "\u03bfther" + suffix}, headers=headers)
    assert r.status_code == 200, r.text
    # a look-alike of its own name still holds the skeleton: the old spelling is not free
    r = await try_register(client, "other" + suffix)
    assert assert_problem(r, 409)["errors"] == [SIMILAR_ERROR]


def test_createsuperuser_refuses_a_look_alike(database_url):
    suffix = tag()
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SUPERUSER_PASSWORD": PASSWORD}

    def create(username):
        return subprocess.run(
            [sys.executable, "manage.py", "createsuperuser", "--noinput", "--username", username,
             "--email", f"{unique()}@example.com"],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )  # fmt: skip

    assert create("root" + suffix).returncode == 0
    refused = create("r\u03bfot" + suffix)
    assert refused.returncode == 1 and SIMILAR in refused.stderr, refused.stderr


async def test_login_by_email_accepts_every_spelling_registration_stores(client):
    local = unique("ann")
    reg = await register(client, email=f"{local}@bücher.example")
    assert reg["user"]["email"] == f"{local}@bücher.example"
    for spelling in (
        f"{local}@xn--bcher-kva.example",  # the IDN domain as punycode
        unicodedata.normalize("NFD", f"{local}@bücher.example"),  # u + combining diaeresis
        f" {local.upper()}@BÜCHER.example ",
    ):
        r = await client.post("/user/login", json={"email": spelling, "password": PASSWORD})
        assert r.status_code == 200, (spelling, r.text)
    # and registration treats the punycode spelling as the same address
    r = await try_register(client, unique(), email=f"{local}@xn--bcher-kva.example")
    assert [e["field"] for e in assert_problem(r, 409)["errors"]] == ["email"]


ROWS = [  # id order: the oldest of each look-alike group keeps the skeleton
    ("admin", "admin", "a@example.com"),
    ("\u0430dmin", "\u0430dmin", "b@xn--bcher-kva.example"),
    ("adm\u0131n", "adm\u0131n", "c@example.com"),
    ("bob", "bob", "d@example.com"),
]


@pytest.fixture
async def old_database(backend, tmp_path):
    """A database at migration 0002 holding look-alikes that the new rule would refuse."""
    if backend == "sqlite":
        path = tmp_path / "old.sqlite3"
        url = f"sqlite://{path}"
        migrate_to(url, "0002_widen_username_key")
        with sqlite3.connect(path) as db:
            db.executemany(
                "INSERT INTO user_user (username, username_key, email, password, is_active, is_staff,"
                " is_superuser, date_joined) VALUES (?, ?, ?, '!', 1, 0, 0, '2020-01-01 00:00:00')",
                ROWS,
            )

        def rows():
            with sqlite3.connect(path) as db:
                return db.execute(
                    "SELECT username, email, username_skeleton FROM user_user ORDER BY id"
                ).fetchall()

        yield url, rows
        return
    base = os.environ["TEST_DATABASE_URL"].replace("postgres://", "postgresql://", 1)
    name = f"old_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(base)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = postgres_url_for(os.environ["TEST_DATABASE_URL"], name)
    try:
        migrate_to(url, "0002_widen_username_key")
        db = await asyncpg.connect(postgres_url_for(base, name))
        await db.executemany(
            "INSERT INTO user_user (username, username_key, email, password, is_active, is_staff,"
            " is_superuser, date_joined) VALUES ($1, $2, $3, '!', true, false, false, now())",
            ROWS,
        )
        await db.close()

        async def fetch():
            db = await asyncpg.connect(postgres_url_for(base, name))
            try:
                rows = await db.fetch("SELECT username, email, username_skeleton FROM user_user ORDER BY id")
                return [tuple(row) for row in rows]
            finally:
                await db.close()

        yield url, lambda: asyncio.run(fetch())
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def migrate_to(url, name):
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "user", name],
        cwd=ROOT, env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


async def test_migration_fills_skeletons_on_a_database_that_has_look_alikes(old_database):
    url, rows = old_database
    await asyncio.to_thread(migrate, url)
    after = await asyncio.to_thread(rows)
    usernames = [row[0] for row in after]
    assert usernames == [row[0] for row in ROWS]
    skeletons = {row[0]: row[2] for row in after}
    # the oldest keeps the skeleton, the later look-alikes keep their names without one
    assert skeletons["admin"] and skeletons["bob"] and skeletons["admin"] != skeletons["bob"]
    assert skeletons["\u0430dmin"] is None and skeletons["adm\u0131n"] is None
    # stored emails now have the form registration and login use
    assert after[1][1] == "b@bücher.example"
