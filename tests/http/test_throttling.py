"""Throttling (issue 9, point 1): the THROTTLE_* limits, 429 throttled with Retry-After and RateLimit
headers, per account and IP so an attacker cannot lock the owner out, counters shared through a real
Redis, and a Redis that goes away costing nothing but the sharing."""

import asyncio
import logging
import random
import socket

import httpx
import limits
import pytest

import settings
from apps.core import throttle as throttle_module
from apps.core.throttle import Throttle, Throttled
from tests.helpers import PASSWORD, assert_problem, bearer, register, unique

SMALL = limits.parse("3/hour")


@pytest.fixture(autouse=True)
def fresh_counters(monkeypatch):
    monkeypatch.setattr(throttle_module, "_throttle", None)


@pytest.fixture
async def from_ip(app):
    """Clients at other addresses (the ASGI peer address, as uvicorn sets it from a trusted proxy)."""
    clients = []

    def make(ip: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(ip, 50000))
        c = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.aclose()


def random_ip() -> str:
    return f"198.51.{random.randint(0, 255)}.{random.randint(1, 254)}"


async def login(client, email, password):
    return await client.post("/user/login", json={"email": email, "password": password})


def assert_throttled(r):
    body = assert_problem(r, 429, "throttled")
    assert int(r.headers["retry-after"]) > 0
    assert r.headers["ratelimit-limit"] and r.headers["ratelimit-remaining"] == "0"
    assert int(r.headers["ratelimit-reset"]) > 0
    return body


async def test_failed_logins_per_account_and_ip_then_429_even_with_the_right_password(
    client, from_ip, monkeypatch
):
    monkeypatch.setattr(settings, "THROTTLE_LOGIN_ACCOUNT", SMALL)
    account = await register(client)
    email = account["user"]["email"]
    attacker, owner = from_ip(random_ip()), from_ip(random_ip())
    for _ in range(3):
        assert_problem(await login(attacker, email, "Wrong-passw0rd"), 401)
    assert_throttled(await login(attacker, email, "Wrong-passw0rd"))
    assert_throttled(await login(attacker, email, PASSWORD))  # not even checked
    # the owner, elsewhere, is not locked out
    assert (await login(owner, email, PASSWORD)).status_code == 200
    # nor by the username: another identifier is another key (it names the account as typed)
    r = await attacker.post(
        "/user/login", json={"username": account["user"]["username"], "password": PASSWORD}
    )
    assert r.status_code == 200


async def test_every_spelling_that_reaches_one_account_counts_as_one(client, from_ip, monkeypatch):
    """The email field also finds a username spelled like an address, and usernames are compared
    NFKC-folded and case-folded: fullwidth letters or another case must not buy new attempts."""
    monkeypatch.setattr(settings, "THROTTLE_LOGIN_ACCOUNT", SMALL)
    name = f"{unique()}@old.example.com"
    await register(client, username=name, email=f"{unique()}@example.com")
    attacker = from_ip(random_ip())
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if c.isalpha() and c.isascii() else c for c in name)
    for spelling in (name, name.upper(), fullwidth):
        assert_problem(await login(attacker, spelling, "Wrong-passw0rd"), 401)
    assert_throttled(await login(attacker, name.title(), PASSWORD))


async def test_a_success_clears_the_failures(client, from_ip, monkeypatch):
    monkeypatch.setattr(settings, "THROTTLE_LOGIN_ACCOUNT", SMALL)
    account = await register(client)
    email = account["user"]["email"]
    me = from_ip(random_ip())
    for _ in range(2):
        await login(me, email, "Wrong-passw0rd")
    assert (await login(me, email, PASSWORD)).status_code == 200
    for _ in range(3):
        assert_problem(await login(me, email, "Wrong-passw0rd"), 401)
    assert_throttled(await login(me, email, "Wrong-passw0rd"))


async def test_attempts_in_flight_at_once_are_all_counted(client, from_ip, monkeypatch):
    """Counted before the password is checked: ten wrong guesses sent together get three checks."""
    monkeypatch.setattr(settings, "THROTTLE_LOGIN_ACCOUNT", SMALL)
    account = await register(client)
    attacker = from_ip(random_ip())
    answers = await asyncio.gather(
        *[login(attacker, account["user"]["email"], f"Guess-{i}-passw0rd") for i in range(10)]
    )
    assert sorted(r.status_code for r in answers) == [401] * 3 + [429] * 7


async def test_an_unknown_address_is_throttled_like_a_known_one(client, from_ip, monkeypatch):
    monkeypatch.setattr(settings, "THROTTLE_LOGIN_ACCOUNT", SMALL)
    attacker = from_ip(random_ip())
    nobody = f"{unique()}@example.com"
    for _ in range(3):
        assert_problem(await login(attacker, nobody, "Wrong-passw0rd"), 401)
    assert_throttled(await login(attacker, nobody, "Wrong-passw0rd"))


async def test_logins_per_ip(client, from_ip, monkeypatch):
    monkeypatch.setattr(settings, "THROTTLE_LOGIN_IP", SMALL)
    busy = from_ip(random_ip())
    for _ in range(3):
        assert_problem(await login(busy, f"{unique()}@example.com", "Wrong-passw0rd"), 401)
    assert_throttled(await login(busy, f"{unique()}@example.com", "Wrong-passw0rd"))
    assert_problem(await login(from_ip(random_ip()), f"{unique()}@example.com", "Wrong-passw0rd"), 401)


async def test_registrations_per_ip(from_ip, monkeypatch):
    monkeypatch.setattr(settings, "THROTTLE_REGISTER_IP", SMALL)
    c = from_ip(random_ip())
    for _ in range(3):
        await register(c)
    name = unique()
    r = await c.post(
        "/user/register", json={"username": name, "email": f"{name}@example.com", "password": PASSWORD}
    )
    assert_throttled(r)


async def test_reset_requests_per_address_and_per_ip(client, from_ip, monkeypatch):
    monkeypatch.setattr(settings, "THROTTLE_PASSWORD_RESET", SMALL)
    address = f"{unique()}@example.com"  # no account: throttled all the same
    for _ in range(3):
        r = await from_ip(random_ip()).post("/user/password/reset", json={"email": address})
        assert r.status_code == 202
    assert_throttled(await from_ip(random_ip()).post("/user/password/reset", json={"email": address}))
    one = from_ip(random_ip())
    for _ in range(3):
        assert (
            await one.post("/user/password/reset", json={"email": f"{unique()}@example.com"})
        ).status_code == 202
    assert_throttled(await one.post("/user/password/reset", json={"email": f"{unique()}@example.com"}))


async def test_verification_and_email_change_mails_per_account(client, monkeypatch):
    monkeypatch.setattr(settings, "THROTTLE_PASSWORD_RESET", SMALL)
    account = await register(client)
    auth = bearer(account["access_token"])
    for _ in range(2):
        assert (await client.post("/user/email/verification", headers=auth)).status_code == 202
    r = await client.post(
        "/user/me/email", json={"email": f"{unique()}@example.com", "password": "Wrong-pw-1"}, headers=auth
    )
    assert r.status_code == 422  # counted too: the password check behind it is no free oracle
    assert_throttled(await client.post("/user/email/verification", headers=auth))
    r = await client.post(
        "/user/me/email", json={"email": f"{unique()}@example.com", "password": PASSWORD}, headers=auth
    )
    assert_throttled(r)


async def test_off_means_no_limit(client, from_ip, monkeypatch):
    monkeypatch.setattr(settings, "THROTTLE_LOGIN_ACCOUNT", None)
    monkeypatch.setattr(settings, "THROTTLE_LOGIN_IP", None)
    account = await register(client)
    c = from_ip(random_ip())
    for _ in range(12):
        assert_problem(await login(c, account["user"]["email"], "Wrong-passw0rd"), 401)
    assert (await login(c, account["user"]["email"], PASSWORD)).status_code == 200


def test_a_bad_limit_is_refused_at_startup():
    import subprocess
    import sys

    from tests.helpers import ROOT

    result = subprocess.run(
        [sys.executable, "-c", "import settings"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "DEBUG": "true", "THROTTLE_LOGIN_IP": "lots"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "THROTTLE_LOGIN_IP" in result.stderr


# --- Redis --------------------------------------------------------------------------------------------


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
async def redis_url():
    if not redis_up():
        pytest.fail("Redis is not answering on 127.0.0.1:6379 (the machine's Redis must run for this test)")
    import redis.asyncio as redis

    db = random.randint(1, 15)
    url = f"redis://127.0.0.1:6379/{db}"
    yield url
    client = redis.from_url(url)
    async for key in client.scan_iter("authservice*"):
        await client.delete(key)
    await client.aclose()


async def test_two_processes_share_their_counters_through_redis(redis_url):
    first, second = Throttle(redis_url), Throttle(redis_url)
    key = ("login-account", unique(), "203.0.113.9")
    await first.hit(SMALL, *key)
    await second.hit(SMALL, *key)
    await first.hit(SMALL, *key)
    with pytest.raises(Throttled) as raised:
        await second.hit(SMALL, *key)
    assert raised.value.retry_after > 0


async def test_a_redis_that_goes_away_falls_back_to_this_process_and_comes_back(caplog, monkeypatch):
    # a port where nothing answers: the Redis of this throttle is "down"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = Throttle(f"redis://127.0.0.1:{port}/0")
    key = ("register-ip", unique())
    with caplog.at_level(logging.WARNING, logger="apps.throttle"):
        for _ in range(3):
            await down.hit(SMALL, *key)  # answered, counted in this process
        with pytest.raises(Throttled):
            await down.hit(SMALL, *key)
    assert caplog.text.count("Redis is not answering") == 1  # said once, not per request
    monkeypatch.setattr(throttle_module, "REDIS_RETRY_SECONDS", 0.0)
    down._redis_down_until = 0.0
    await down.hit(SMALL, "other", unique())  # tries Redis again (still down): no error
