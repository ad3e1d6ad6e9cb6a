"""The database goes away and comes back (issue 9, point 3): a real uvicorn server on a PostgreSQL
cluster this module owns (initdb into a temporary directory, a port of its own), taken away under a
bounded mixed load and brought back, two ways: stopped (`pg_ctl stop -m fast`: connections closed,
new ones refused) and frozen (SIGSTOP: connections stay open and nothing answers, as behind a network
partition). And a server started while the database is down.

While the database is away: no 500 and no hang; every request that needs it is answered 503
problem+json with Retry-After within 2 s; what needs none keeps working (/health, and /user/verify
with an access token this worker checked before); /ready is 503. Once it is back: the same process
serves again within a few seconds, its mail sender included; every registration answered 201 is in
the database whole (account, `registered` event, verification mail) and nothing is half-written.
The server's log has a line per outage, not a traceback per request.

The machine's own cluster (5432) is never touched. Not marked `system`: the module takes about 35 s
(PostgreSQL's server binaries are needed; without them it is skipped).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from tortoise import connections
from tortoise.context import TortoiseContext
from tortoise.transactions import in_transaction

import settings
from apps.core import database
from tests.conftest import Mailbox
from tests.helpers import PASSWORD, Cluster, bearer, live_server, postgres_cluster, unique

DATABASE = "authfaults"
ANSWER_WITHIN = 2.0  # seconds: the contract's bound on a 503, and on anything while the database is away
RECOVER_WITHIN = 5.0  # seconds from the database answering again to the service serving again
OUTAGE = 4.0  # seconds the database stays away
CLIENTS = 4
# fewer pooled connections than concurrent requests: while the database does not answer, requests
# also queue for a connection
POOL = "?maxsize=3"
# Cheap hashing and no throttles (conftest): the load measures the database's absence, not argon2.
SERVER_ENV = {
    "PASSWORD_HASHER_MEMORY_COST": "1024",
    "PASSWORD_HASHER_TIME_COST": "1",
    # the session checked before the outage must stay in the worker's cache for the whole test
    "SESSION_CACHE_TTL": "600",
    "MAIL_SENDER": "true",  # as in production: it must live through the outage and resume
    # the production default, whose waits add up to the contract's 2 s (conftest raises it for the
    # rest of the suite)
    "DATABASE_TIMEOUT": "0.5",
}

# a line per request of the load, and per mail, otherwise
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("mail.log").setLevel(logging.WARNING)


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[Cluster]:
    """initdb, start, create and migrate the database; removed after the module."""
    async with postgres_cluster("authservice-faults-", DATABASE) as owned:
        yield owned


@pytest.fixture
def mail_server():
    """A real SMTP server for the service's mail sender."""
    box = Mailbox()
    box.start()
    yield box
    box.stop()


def server_env(mail_server: Mailbox, **extra: str) -> dict[str, str]:
    return {
        **SERVER_ENV,
        "EMAIL_BACKEND": "smtp",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(mail_server.port),
        **extra,
    }


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request as the client saw it; status 0: no answer (the client gave up or lost the line)."""

    name: str
    started: float  # time.monotonic()
    elapsed: float
    status: int
    content_type: str = ""
    retry_after: str | None = None
    text: str = ""

    @property
    def ended(self) -> float:
        return self.started + self.elapsed


class Recorder:
    """One client, keeping what every request it sent got."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.outcomes: list[Outcome] = []

    async def call(
        self, name: str, method: str, path: str, **kwargs
    ) -> tuple[Outcome, httpx.Response | None]:
        started = time.monotonic()
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            outcome = Outcome(name, started, time.monotonic() - started, 0, text=type(exc).__name__)
            self.outcomes.append(outcome)
            return outcome, None
        outcome = Outcome(
            name,
            started,
            time.monotonic() - started,
            response.status_code,
            response.headers.get("content-type", ""),
            response.headers.get("retry-after"),
            response.text[:300],
        )
        self.outcomes.append(outcome)
        return outcome, response


@dataclass(frozen=True, slots=True)
class Registration:
    username: str
    answered: float  # time.monotonic() of the 201


async def account_traffic(
    recorder: Recorder, account: dict, registered: list[Registration], halt: asyncio.Event
) -> None:
    """One client's mix, round after round: a registration; a login, then /user/me with its token (a
    session the worker has not seen: a query); /user/verify and /user/me with the token the worker
    checked before the outage (its session cached); /health."""
    cached = bearer(account["access_token"])
    while not halt.is_set():
        username = unique("flt")
        outcome, _ = await recorder.call(
            "register",
            "POST",
            "/user/register",
            json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
        )
        if outcome.status == 201:
            registered.append(Registration(username, outcome.ended))
        outcome, response = await recorder.call(
            "login", "POST", "/user/login", json={"username": account["username"], "password": PASSWORD}
        )
        if response is not None and outcome.status == 200:
            await recorder.call("me", "GET", "/user/me", headers=bearer(response.json()["access_token"]))
        await recorder.call("verify (cached token)", "GET", "/user/verify", headers=cached)
        await recorder.call("me (cached token)", "GET", "/user/me", headers=cached)
        await recorder.call("health", "GET", "/health")


async def probe_readiness(recorder: Recorder, halt: asyncio.Event) -> None:
    """What an orchestrator does: /health and /ready, ten times a second."""
    while not halt.is_set():
        await recorder.call("ready", "GET", "/ready")
        await recorder.call("health", "GET", "/health")
        await asyncio.sleep(0.1)


class Load:
    """CLIENTS clients running `account_traffic` and a readiness prober, until stopped."""

    def __init__(self, base: str, account: dict) -> None:
        self.halt = asyncio.Event()
        self.registered: list[Registration] = []
        self.clients = [
            httpx.AsyncClient(base_url=base, timeout=3 * ANSWER_WITHIN) for _ in range(CLIENTS + 1)
        ]
        self.recorders = [Recorder(client) for client in self.clients]
        self.tasks = [
            asyncio.create_task(account_traffic(recorder, account, self.registered, self.halt))
            for recorder in self.recorders[:-1]
        ]
        self.tasks.append(asyncio.create_task(probe_readiness(self.recorders[-1], self.halt)))

    async def stop(self) -> list[Outcome]:
        self.halt.set()
        await asyncio.gather(*self.tasks)
        for client in self.clients:
            await client.aclose()
        return sorted((o for r in self.recorders for o in r.outcomes), key=lambda o: o.started)


SUCCESS = {"register": 201, "login": 200, "me": 200, "me (cached token)": 200, "ready": 200}
# /user/me with a cached session answers from the cache, unless a change to the account's user
# object (here: the logins of the same account) made it stale since: then it reads, so needs the database
NEEDS_DATABASE = ("register", "login", "me", "ready")


def assert_unavailable(outcome: Outcome) -> None:
    """The contract's 503: problem+json with Retry-After in seconds, within ANSWER_WITHIN."""
    assert outcome.status == 503, outcome
    assert outcome.content_type.startswith("application/problem+json"), outcome
    assert outcome.retry_after is not None and int(outcome.retry_after) > 0, outcome
    assert outcome.elapsed <= ANSWER_WITHIN, outcome


async def eventually(check: Callable[[], object], seconds: float) -> bool:
    """Whether `check()` came true within `seconds` (polled)."""
    for _ in range(int(seconds / 0.1)):
        if check():
            return True
        await asyncio.sleep(0.1)
    return bool(check())


def epoch_files(directory: Path) -> list[Path]:
    return list(directory.glob("authservice-*.epoch"))


def server_log(base: str, log_dir: Path) -> str:
    return (log_dir / f"server-{urlsplit(base).port}.log").read_text(errors="replace")


def assert_quiet_log(log: str) -> None:
    """A line per outage event, not one (let alone a traceback) per request; never SQL."""
    assert "Traceback" not in log and "unhandled" not in log, log[-3000:]
    assert log.count("database unreachable") <= 3, log[-3000:]
    assert "SELECT" not in log and "INSERT" not in log, log[-3000:]


async def assert_stored_whole(cluster: Cluster, registered: list[Registration]) -> None:
    """Every registration answered 201 is in the database with its event and its mail; no account
    there lacks either (a half-written registration)."""
    connection = await cluster.connect()
    try:
        rows = await connection.fetch(
            """SELECT u.username,
                      EXISTS (SELECT 1 FROM user_event e WHERE e.user_id = u.id AND e.type = 'registered')
                        AND EXISTS (SELECT 1 FROM mail_mail m WHERE m."to" = u.email) AS whole
               FROM user_user u"""
        )
    finally:
        await connection.close()
    stored = {row["username"] for row in rows}
    missing = {r.username for r in registered} - stored
    assert not missing, missing
    half_written = [row["username"] for row in rows if not row["whole"]]
    assert not half_written, half_written


async def first_account(base: str) -> dict:
    """A registered account whose token the server has checked once: its session is now cached."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        username = unique("flt")
        r = await client.post(
            "/user/register",
            json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
        )
        assert r.status_code == 201, r.text
        account = {**r.json(), "username": username}
        r = await client.get("/user/verify", headers=bearer(account["access_token"]))
        assert r.status_code == 204, r.text
        return account


@pytest.mark.parametrize("outage", ["stopped", "frozen"])
async def test_database_outage_under_load(cluster: Cluster, mail_server: Mailbox, tmp_path: Path, outage):
    with live_server(cluster.url(POOL), tmp_path, env=server_env(mail_server)) as base:
        account = await first_account(base)
        load = Load(base, account)
        try:
            await asyncio.sleep(1.5)
            leaving = time.monotonic()
            await (cluster.stop() if outage == "stopped" else cluster.freeze())
            gone = time.monotonic()
            await asyncio.sleep(OUTAGE)
            returning = time.monotonic()
            await (cluster.start() if outage == "stopped" else cluster.thaw())
            back = time.monotonic()
            await asyncio.sleep(RECOVER_WITHIN + 1.5)
        finally:
            outcomes = await load.stop()
            await cluster.restore()  # whatever failed: the next test needs the cluster
        log = server_log(base, tmp_path)

    # no 500, nothing unanswered, nothing slow; every 503 as the contract has it
    failed = [o for o in outcomes if o.status == 0 or (o.status >= 500 and o.status != 503)]
    assert not failed, failed[:5]
    slow = [o for o in outcomes if o.elapsed > ANSWER_WITHIN]
    assert not slow, slow[:5]
    for o in outcomes:
        if o.status == 503:
            assert_unavailable(o)
    # what needs no database worked the whole time
    assert all(o.status == 200 for o in outcomes if o.name == "health")
    verified = [o for o in outcomes if o.name == "verify (cached token)"]
    assert all(o.status == 204 for o in verified), [o for o in verified if o.status != 204][:5]
    # before: everything served
    before = [o for o in outcomes if o.ended < leaving and o.name in SUCCESS]
    assert before and all(o.status == SUCCESS[o.name] for o in before), before[:5]
    # while away: whatever needs the database is 503, from every kind of request, and verify worked
    away = [o for o in outcomes if o.started >= gone and o.ended <= returning]
    # (no "me" with a fresh token: no login succeeds to get one)
    expected = {"register", "login", "me (cached token)", "ready", "verify (cached token)"}
    assert {o.name for o in away} >= expected, {o.name for o in away}
    for o in away:
        if o.name in NEEDS_DATABASE or (o.name == "me (cached token)" and o.status != 200):
            assert_unavailable(o)
    # back: the same process serves every kind of request again within RECOVER_WITHIN
    for name, status in SUCCESS.items():
        served = [o for o in outcomes if o.name == name and o.started >= back and o.status == status]
        assert served and served[0].ended - back <= RECOVER_WITHIN, (name, served[:1])
    settled = [o for o in outcomes if o.started >= back + RECOVER_WITHIN and o.name in SUCCESS]
    assert settled and all(o.status == SUCCESS[o.name] for o in settled), settled[:5]
    recovered = min(
        o.ended for o in outcomes if o.name == "register" and o.started >= back and o.status == 201
    )
    slowest = max(o.elapsed for o in outcomes if o.status == 503)
    print(f"\n{outage}: {len(outcomes)} requests, {len(away)} while away, slowest 503 {slowest:.2f} s; ")
    print(f"a registration served {recovered - back:.2f} s after the database was back")

    assert_quiet_log(log)
    await assert_stored_whole(cluster, load.registered)
    # the mail sender lived through it: mail of a registration after the outage has arrived
    late = next(r for r in load.registered if r.answered > back)
    arrived = await eventually(lambda: mail_server.to(f"{late.username}@example.com"), 5)
    assert arrived, "the mail sender did not resume"


async def test_a_server_started_without_its_database_serves_once_it_is_back(
    cluster: Cluster, mail_server: Mailbox, tmp_path: Path
):
    """No crash loop: the process starts, answers /health (so it is not restarted), /ready 503 and
    503 to what needs the database, and serves once the database is there, without a restart. The
    revocation counter, named after the database's identity, is found once the database answers."""
    await cluster.stop()
    try:
        env = server_env(mail_server, REVOCATION_EPOCH_FILE="", XDG_RUNTIME_DIR=str(tmp_path))
        with live_server(cluster.url(POOL), tmp_path, env=env) as base:
            async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                recorder = Recorder(client)
                outcome, _ = await recorder.call("ready", "GET", "/ready")
                assert_unavailable(outcome)
                username = unique("flt")
                registration = {
                    "username": username,
                    "email": f"{username}@example.com",
                    "password": PASSWORD,
                }
                outcome, _ = await recorder.call("register", "POST", "/user/register", json=registration)
                assert_unavailable(outcome)
                assert (await client.get("/health")).status_code == 200

                await cluster.start()
                back = time.monotonic()
                while (r := await client.post("/user/register", json=registration)).status_code != 201:
                    assert r.status_code == 503 and time.monotonic() - back < RECOVER_WITHIN, r.text
                    await asyncio.sleep(0.1)
                access = bearer(r.json()["access_token"])
                assert (await client.get("/user/verify", headers=access)).status_code == 204
                assert (await client.get("/user/me", headers=access)).status_code == 200
                assert (await client.get("/ready")).status_code == 200
                # the revocation counter was found (the server's default place, redirected here)
                assert await eventually(lambda: epoch_files(tmp_path), 5)
                # a logout reaches the cache: the token is refused at once
                assert (await client.post("/user/logout", headers=access)).status_code == 204
                assert (await client.get("/user/verify", headers=access)).status_code == 401
            log = server_log(base, tmp_path)
        assert_quiet_log(log)
        await assert_stored_whole(cluster, [Registration(username, 0.0)])
    finally:
        await cluster.restore()


async def test_a_transaction_whose_begin_gets_no_answer_gives_its_connection_back(cluster: Cluster):
    """Tortoise kept the pooled connection of a transaction whose BEGIN failed, and left the task
    using the dead transaction: the pool was one connection smaller for good (here, with one, nothing
    was served again) and its close at shutdown waited 10 s for it."""
    config = database.bounded(settings.tortoise_config(cluster.url("?maxsize=1")), 0.5)
    async with TortoiseContext() as context:
        await context.init(config=config)
        client = connections.get("default")

        async def transaction() -> int:
            async with in_transaction() as connection:
                return (await connection.execute_query("SELECT 1 AS one"))[1][0]["one"]

        try:
            assert await transaction() == 1  # the pool's one connection, open and idle
            await cluster.freeze()
            try:
                with pytest.raises(TimeoutError):  # its BEGIN gets no answer
                    await transaction()
            finally:
                await cluster.thaw()
            assert connections.get("default") is client  # not the transaction that never began
            assert await transaction() == 1  # the connection was given back, and is usable
        finally:
            started = time.monotonic()
            await context.close_connections()
            assert time.monotonic() - started < 2, "the pool's close waited for a connection not given back"
