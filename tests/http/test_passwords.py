"""Point 7: argon2id by default; legacy and Django hashes verify and are upgraded at login, saving only
the password column; hashing never runs on the event loop."""

import logging
import threading

import pytest
from passlib.hash import pbkdf2_sha256

import settings
from apps.user import passwords
from apps.user.models import User, username_key
from tests.helpers import PASSWORD, assert_problem, register, unique


def django_hash(password: str, hasher: str) -> str:
    """A hash made by Django's own make_password, as found in a Django project's auth_user table."""
    import django
    from django.conf import settings as django_settings

    if not django_settings.configured:
        django_settings.configure()
        django.setup()
    from django.contrib.auth.hashers import make_password

    return make_password(password, hasher=hasher)


async def user_with_hash(password_hash: str) -> User:
    name = unique()
    return await User.create(
        username=name, username_key=username_key(name), email=f"{name}@example.com", password=password_hash
    )


async def login(client, user: User, password: str = PASSWORD):
    return await client.post("/user/login", json={"email": user.email, "password": password})


@pytest.fixture
def sql_log(caplog):
    caplog.set_level(logging.DEBUG, logger="tortoise.db_client")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "tortoise.db_client"]


LEGACY_HASHES = {
    "passlib pbkdf2_sha256 (the article's service)": lambda p: pbkdf2_sha256.hash(p),
    "django pbkdf2_sha256": lambda p: django_hash(p, "pbkdf2_sha256"),
    "django pbkdf2_sha1": lambda p: django_hash(p, "pbkdf2_sha1"),
    "django argon2": lambda p: django_hash(p, "argon2"),
    "django bcrypt_sha256": lambda p: django_hash(p, "bcrypt_sha256"),
}


@pytest.mark.parametrize("make_hash", LEGACY_HASHES.values(), ids=LEGACY_HASHES.keys())
async def test_legacy_hash_verifies_and_is_upgraded_saving_only_the_password(client, make_hash, sql_log):
    user = await user_with_hash(make_hash(PASSWORD))
    assert_problem(await login(client, user, "Wrong-Password-1"), 401)
    assert (await User.get(id=user.id)).password == user.password  # a failed login upgrades nothing

    r = await login(client, user)
    assert r.status_code == 200, r.text
    upgraded = (await User.get(id=user.id)).password
    assert upgraded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    updates = [q for q in sql_log() if q.lstrip().upper().startswith("UPDATE") and "user_user" in q]
    # the SET clause writes the password; the login's own update only names it in its WHERE clause
    upgrade = [q for q in updates if '"password"' in q.upper().split(" WHERE ")[0].lower()]
    assert len(upgrade) == 1
    assert all(column not in upgrade[0] for column in ('"email"', '"username"', '"is_staff"', '"is_active"'))
    # and the upgraded hash keeps working
    assert (await login(client, user)).status_code == 200


async def test_current_hash_is_not_rewritten(client):
    reg = await register(client)
    before = (await User.get(id=reg["user"]["id"])).password
    await client.post("/user/login", json={"email": reg["user"]["email"], "password": PASSWORD})
    assert (await User.get(id=reg["user"]["id"])).password == before


async def test_changed_policy_upgrades_at_next_login(client, monkeypatch):
    reg = await register(client)
    monkeypatch.setattr(settings, "PASSWORD_HASHER_TIME_COST", 3)
    passwords._context.cache_clear()
    try:
        await client.post("/user/login", json={"email": reg["user"]["email"], "password": PASSWORD})
        assert (await User.get(id=reg["user"]["id"])).password.startswith("$argon2id$v=19$m=19456,t=3,p=1$")
    finally:
        monkeypatch.undo()
        passwords._context.cache_clear()


@pytest.mark.parametrize("unusable", ["!", "!" + "x" * 40, "", "plaintext-password"])
async def test_unusable_or_unknown_hashes_never_log_in(client, unusable):
    user = await user_with_hash(unusable)
    for attempt in (PASSWORD, unusable or "empty-pass", "x" * 40):
        assert_problem(await login(client, user, attempt), 401, "invalid_credentials")


async def test_hashing_never_runs_on_the_event_loop(client, monkeypatch):
    loop_thread = threading.get_ident()
    threads = []
    real_verify, real_context = passwords._verify_and_update, passwords._context()
    real_hash = real_context.hash

    def spy_verify(password, stored):
        threads.append(threading.get_ident())
        return real_verify(password, stored)

    def spy_hash(secret, *args, **kwargs):
        threads.append(threading.get_ident())
        return real_hash(secret, *args, **kwargs)

    monkeypatch.setattr(passwords, "_verify_and_update", spy_verify)
    monkeypatch.setattr(real_context, "hash", spy_hash)
    reg = await register(client)  # hash
    await client.post("/user/login", json={"email": reg["user"]["email"], "password": PASSWORD})  # verify
    await client.post(
        "/user/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )  # dummy verify
    assert len(threads) >= 3
    assert loop_thread not in threads


async def test_hashing_threads_yield_to_the_event_loop(client):
    import os

    niceness = await passwords._pool().run(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    assert niceness >= os.getpriority(os.PRIO_PROCESS, 0) + 10 or niceness == 19


async def test_a_hashing_queue_too_long_to_wait_in_is_refused_at_once(client, monkeypatch):
    import asyncio

    reg = await register(client)
    monkeypatch.setattr(settings, "PASSWORD_HASHER_MAX_WAIT", 0)  # any queue at all is too long
    login = {"email": reg["user"]["email"], "password": PASSWORD}
    name = unique()
    responses = await asyncio.gather(
        *[client.post("/user/login", json=login) for _ in range(6)],
        client.post(
            "/user/register", json={"username": name, "email": f"{name}@example.com", "password": PASSWORD}
        ),
    )
    statuses = [r.status_code for r in responses]
    assert {200, 201} & set(statuses) and 503 in statuses, statuses  # the first in line is served
    for r in responses:
        if r.status_code == 503:
            assert_problem(r, 503, "overloaded")
            assert r.headers["retry-after"] == "1"
    if statuses[-1] == 503:  # a refused registration left nothing behind
        assert not await User.exists(username_key=name.lower())
