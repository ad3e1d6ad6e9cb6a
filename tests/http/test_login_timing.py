"""Issue item 4: a failed login costs the same whatever the account's state, and one account cannot
hold up everybody else's logins.

Timing is asserted by counting, not by the clock: the hashing pool counts the primitives it runs by
kind, and every failed login must run exactly one argon2id verification at the current policy, as an
unknown account does. One coarse clock check (generous margins) backs the count up.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter

import pytest
from passlib.hash import argon2, django_pbkdf2_sha256, pbkdf2_sha256

from apps.user import passwords
from apps.user.models import User
from tests.helpers import PASSWORD, assert_problem, django_hash, register, unique, user_with_hash

WRONG = "Wrong-Password-1"


def ops() -> Counter:
    return Counter(passwords._pool().stats.ops)


async def login(client, password: str, **identifier):
    return await client.post("/user/login", json={**identifier, "password": password})


async def failed_login_ops(client, password: str, **identifier) -> Counter:
    """The primitives one failed login ran, by kind."""
    before = ops()
    assert_problem(await login(client, password, **identifier), 401, "invalid_credentials")
    return ops() - before


STORED_HASHES = {
    "argon2id at the policy": lambda: passwords._context().hash(PASSWORD),
    "unusable (Django's set_unusable_password)": lambda: "!" + "x" * 40,
    "unusable, bare": lambda: "!",
    "empty": lambda: "",
    "unknown format": lambda: "plaintext-password",
    "argon2id below the policy": lambda: argon2.using(rounds=1, memory_cost=8192).hash(PASSWORD),
    "passlib pbkdf2_sha256 (this service's seed)": lambda: pbkdf2_sha256.hash(PASSWORD),
    "django pbkdf2_sha256": lambda: django_hash(PASSWORD, "pbkdf2_sha256"),
    "django pbkdf2_sha1": lambda: django_hash(PASSWORD, "pbkdf2_sha1"),
    "django argon2": lambda: django_hash(PASSWORD, "argon2"),
    "django bcrypt_sha256": lambda: django_hash(PASSWORD, "bcrypt_sha256"),
    "django scrypt": lambda: django_hash(PASSWORD, "scrypt"),
}


async def test_an_unknown_account_costs_one_current_policy_verification(client):
    current = passwords.current_kind()
    assert await failed_login_ops(client, WRONG, email=f"{unique()}@example.com") == {current: 1}
    assert await failed_login_ops(client, WRONG, username=unique()) == {current: 1}


@pytest.mark.parametrize("make_hash", STORED_HASHES.values(), ids=STORED_HASHES.keys())
async def test_every_stored_hash_costs_at_least_one_current_policy_verification(client, make_hash):
    stored = make_hash()
    user = await user_with_hash(stored)
    spent = await failed_login_ops(client, WRONG, email=user.email)
    current = passwords.current_kind()
    assert spent[current] == 1, spent  # exactly what an unknown account costs
    kind = passwords._kind(stored)
    if kind not in (current, passwords.UNUSABLE, passwords.UNKNOWN):  # and the legacy check besides
        assert spent == {current: 1, kind: 1}, spent
    assert (await User.get(id=user.id)).password == stored  # a failed login changes nothing


@pytest.mark.parametrize("password", [WRONG, PASSWORD], ids=["wrong password", "right password"])
@pytest.mark.parametrize(
    "make_hash",
    [STORED_HASHES["argon2id at the policy"], STORED_HASHES["passlib pbkdf2_sha256 (this service's seed)"]],
    ids=["current hash", "legacy hash"],
)
async def test_an_inactive_account_costs_the_same_whether_the_password_is_right(client, make_hash, password):
    stored = make_hash()
    user = await user_with_hash(stored, is_active=False)
    spent = await failed_login_ops(client, password, email=user.email)
    assert spent[passwords.current_kind()] == 1, spent  # the right password is not re-hashed for nothing
    assert (await User.get(id=user.id)).password == stored


async def test_coarse_clock_check_unusable_and_seed_hashes_are_not_faster_than_unknown_accounts(client):
    """Before: ~2 ms for "!" and ~10 ms for a seed pbkdf2 hash against ~25 ms for an unknown account.
    Interleaved medians and a factor of two: a loaded machine slows all three alike."""
    unusable = await user_with_hash("!" + "x" * 40)
    seed = await user_with_hash(pbkdf2_sha256.hash(PASSWORD))
    cases = {"unknown": f"{unique()}@example.com", "unusable": unusable.email, "seed": seed.email}
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(5):
        for name, email in cases.items():
            began = time.perf_counter()
            assert (await login(client, WRONG, email=email)).status_code == 401
            times[name].append(time.perf_counter() - began)
    unknown = statistics.median(times["unknown"])
    assert statistics.median(times["unusable"]) >= 0.5 * unknown, times
    assert statistics.median(times["seed"]) >= 0.5 * unknown, times


async def test_hammering_one_account_with_a_slow_hash_does_not_hold_up_other_logins(client):
    """Django's PBKDF2 at 1,000,000 rounds costs ~10 argon2id verifications. Before, eight concurrent
    attempts on one such account queued eight of them ahead of everybody else's login; now they wait
    for each other, outside the pool's queue."""
    slow = await user_with_hash(
        await asyncio.to_thread(django_pbkdf2_sha256.using(rounds=1_000_000).hash, PASSWORD)
    )
    victim = (await register(client))["user"]
    began = time.perf_counter()
    await login(client, WRONG, email=slow.email)  # what one attempt costs on this machine, now
    one_attempt = time.perf_counter() - began

    attempts = [asyncio.create_task(login(client, WRONG, email=slow.email)) for _ in range(8)]
    await asyncio.wait(attempts, timeout=0.1)  # let them all reach the hashing pool first
    began = time.perf_counter()
    r = await login(client, PASSWORD, email=victim["email"])
    waited = time.perf_counter() - began
    statuses = sorted(r.status_code for r in await asyncio.gather(*attempts))

    assert r.status_code == 200, r.text
    assert waited < 3 * one_attempt, (waited, one_attempt)  # before: ~8 attempts' worth
    # one check of that account in the pool at a time; the others waited their turn outside it or,
    # past PASSWORD_HASHER_MAX_WAIT, were refused
    assert set(statuses) <= {401, 503} and statuses[0] == 401, statuses
