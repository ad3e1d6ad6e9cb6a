"""Point 7: argon2id by default; legacy and Django hashes verify and are upgraded at login, saving only
the password column; hashing never runs on the event loop."""

import logging
import threading
import unicodedata

import pytest
from passlib.hash import pbkdf2_sha256

import settings
from apps.user import passwords
from apps.user.models import User
from tests.helpers import PASSWORD, assert_problem, django_hash, register, unique, user_with_hash


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

    users = [(await register(client))["user"] for _ in range(6)]  # six accounts: no per-account refusal
    monkeypatch.setattr(settings, "PASSWORD_HASHER_MAX_WAIT", 0)  # any queue at all is too long
    name = unique()
    responses = await asyncio.gather(
        *[client.post("/user/login", json={"email": u["email"], "password": PASSWORD}) for u in users],
        client.post(
            "/user/register", json={"username": name, "email": f"{name}@example.com", "password": PASSWORD}
        ),
    )
    statuses = [r.status_code for r in responses]
    assert {200, 201} & set(statuses) and 503 in statuses, statuses  # the first in line is served
    assert passwords._pool().stats.refused["busy"] >= 1
    for r in responses:
        if r.status_code == 503:
            assert_problem(r, 503, "overloaded")
            assert r.headers["retry-after"] == "1"


async def test_a_registration_refused_for_load_leaves_nothing_behind(client, monkeypatch):
    import asyncio
    import time

    monkeypatch.setattr(settings, "PASSWORD_HASHER_MAX_WAIT", 0)  # any queue at all is too long
    # every hashing thread busy, so the registration is certain to be refused
    # (a kind of work the pool has never measured: it assumes the worst, so it knows they are busy)
    blockers = [
        asyncio.ensure_future(passwords._pool().run(time.sleep, 0.5, work=(f"blocker {unique()}",)))
        for _ in range(passwords._pool().threads)
    ]
    await asyncio.sleep(0.05)
    name = unique()
    r = await client.post(
        "/user/register", json={"username": name, "email": f"{name}@example.com", "password": PASSWORD}
    )
    assert_problem(r, 503, "overloaded")
    await asyncio.gather(*blockers)
    assert not await User.exists(username_key=name.lower())
    assert not await User.exists(email=f"{name}@example.com")


# --- NFKC: the same password typed on any system -----------------------------------------------------

NFC = unicodedata.normalize("NFC", "Crème-brûlée-42")  # Windows, Linux
NFD = unicodedata.normalize("NFD", NFC)  # macOS: e + combining grave accent


async def test_a_password_registered_on_windows_opens_the_account_typed_on_a_mac(client):
    reg = await register(client, password=NFC)
    r = await client.post("/user/login", json={"email": reg["user"]["email"], "password": NFD})
    assert r.status_code == 200, r.text


async def test_a_hash_made_before_normalisation_logs_in_and_migrates(client):
    """This service's older argon2id hashes (and Django's) were made from the password as typed."""
    user = await user_with_hash(passwords._context().hash(NFD))
    r = await client.post("/user/login", json={"email": user.email, "password": NFD})
    assert r.status_code == 200, r.text
    migrated = (await User.get(id=user.id)).password
    assert migrated != user.password and passwords.is_current(migrated)
    # the account now opens with the password typed in any form
    r = await client.post("/user/login", json={"email": user.email, "password": NFC})
    assert r.status_code == 200, r.text
    assert (await User.get(id=user.id)).password == migrated  # and is not re-hashed again
