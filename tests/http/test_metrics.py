"""Observability (issue 9, point 5): Prometheus metrics at /metrics, off the public surface by default.

The app under test is built with METRICS_ENABLED on, over the suite's database (the session app has
connected it); prometheus_client runs in this process's single-process mode here. Several workers
sharing PROMETHEUS_MULTIPROC_DIR are tests/system/test_metrics_workers.py's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
import uuid

import httpx
import limits
import pytest
from prometheus_client.parser import text_string_to_metric_families

import settings
from app import create_app
from apps.core import metrics
from apps.core import throttle as throttle_module
from apps.mail import outbox
from apps.mail.models import Mail
from apps.user import passwords, revocation
from middleware import MetricsMiddleware
from tests.helpers import PASSWORD, assert_problem, bearer, register, unique

Samples = dict[tuple[str, frozenset], float]


@pytest.fixture
def metrics_app(app, monkeypatch, database_url):
    monkeypatch.setattr(settings, "METRICS_ENABLED", True)
    yield create_app(settings.tortoise_config(database_url))
    monkeypatch.undo()
    metrics.configure()  # off again: the hooks stop counting for the tests that follow


@pytest.fixture
async def from_ip(metrics_app):
    """Clients of the metrics app at a given address (the ASGI peer, as uvicorn sets it)."""
    clients = []

    def make(ip: str, app=None) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app or metrics_app, client=(ip, 50000))
        clients.append(httpx.AsyncClient(transport=transport, base_url="http://testserver"))
        return clients[-1]

    yield make
    for c in clients:
        await c.aclose()


@pytest.fixture
async def local(from_ip):
    return from_ip("127.0.0.1")


async def scrape(client: httpx.AsyncClient) -> Samples:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(r.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests_of(samples: Samples, **labels: str) -> float:
    return value(samples, "authservice_http_request_duration_seconds_count", **labels)


def random_ip() -> str:
    return f"198.51.100.{random.randint(1, 254)}"


# --- off the public surface -----------------------------------------------------------------------------


async def unknown_path(client: httpx.AsyncClient, **kwargs) -> httpx.Response:
    return await client.get(f"/no-such-{unique()}", **kwargs)


async def test_metrics_while_disabled_is_an_unknown_path_even_from_localhost(app):
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        r = await c.get("/metrics")
        assert_problem(r, 404, "not_found")
        assert r.json() == (await unknown_path(c)).json()
    # off, the layer is not there at all: it costs a request nothing
    assert MetricsMiddleware not in [m.cls for m in app.user_middleware]


async def test_from_an_address_not_allowed_metrics_is_an_unknown_path(from_ip):
    outsider = from_ip("203.0.113.7")
    r = await outsider.get("/metrics")
    assert_problem(r, 404, "not_found")
    assert r.json() == (await unknown_path(outsider)).json()
    # the host check applies as to any path: nothing tells that /metrics exists
    bad_host = {"Host": "scraper.invalid"}
    assert_problem(await outsider.get("/metrics", headers=bad_host), 400, "invalid_host")
    assert_problem(await unknown_path(outsider, headers=bad_host), 400, "invalid_host")
    # and from an allowed address, only GET scrapes
    assert_problem(await from_ip("127.0.0.1").post("/metrics"), 404, "not_found")


@pytest.mark.parametrize("ip", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
async def test_the_allowed_addresses_scrape_by_ip_whatever_the_host(from_ip, ip):
    # Prometheus scrapes a target by address: its Host header is that address, in no ALLOWED_HOSTS
    r = await from_ip(ip).get("/metrics", headers={"Host": "10.0.0.5:8000"})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    assert "authservice_logins_total" in r.text


async def test_allowed_networks_and_openmetrics(from_ip, monkeypatch, database_url):
    monkeypatch.setattr(settings, "METRICS_ALLOWED_IPS", (ipaddress.ip_network("10.0.0.0/8"),))
    app = create_app(settings.tortoise_config(database_url))
    assert (await from_ip("10.20.30.40", app).get("/metrics")).status_code == 200
    assert_problem(await from_ip("127.0.0.1", app).get("/metrics"), 404, "not_found")
    r = await from_ip("10.1.1.1", app).get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.endswith("# EOF\n")


# --- what the metrics say ------------------------------------------------------------------------------


async def test_requests_are_counted_by_route_template_never_the_raw_path(from_ip, local):
    client = from_ip(random_ip())
    account = await register(client)
    session_id = str(uuid.uuid4())
    before = await scrape(local)
    r = await client.delete(f"/user/sessions/{session_id}", headers=bearer(account["access_token"]))
    assert_problem(r, 404)
    await client.get(f"/no/such/{session_id}")
    await client.request("BREW", "/user/me")
    after = await scrape(local)

    route = "/user/sessions/{session_id}"  # the template, as OpenAPI writes it
    labels = {"method": "DELETE", "route": route, "status": "404"}
    assert requests_of(after, **labels) == requests_of(before, **labels) + 1
    assert value(after, "authservice_http_request_duration_seconds_sum", **labels) > value(
        before, "authservice_http_request_duration_seconds_sum", **labels
    )
    assert value(after, "authservice_http_request_duration_seconds_bucket", **labels, le="+Inf") >= 1
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert requests_of(after, **unmatched) == requests_of(before, **unmatched) + 1
    # a method no route has is "other", so a client cannot make series up
    other = {"method": "other", "route": "/user/me", "status": "405"}
    assert requests_of(after, **other) == requests_of(before, **other) + 1
    # no label anywhere holds the raw path
    assert not any(session_id in str(labelset) for _, labelset in after)


async def test_logins_by_outcome(from_ip, local):
    client = from_ip(random_ip())
    account = await register(client)
    email = account["user"]["email"]
    before = await scrape(local)
    assert (await client.post("/user/login", json={"email": email, "password": PASSWORD})).status_code == 200
    r = await client.post("/user/login", json={"email": email, "password": "Wrong-passw0rd"})
    assert_problem(r, 401, "invalid_credentials")
    r = await client.post("/user/login", json={"email": f"{unique()}@example.com", "password": PASSWORD})
    assert_problem(r, 401, "invalid_credentials")
    after = await scrape(local)

    def logins(outcome: str) -> float:
        return value(after, "authservice_logins_total", outcome=outcome) - value(
            before, "authservice_logins_total", outcome=outcome
        )

    assert (logins("success"), logins("invalid_credentials"), logins("throttled")) == (1, 2, 0)
    login = {"method": "POST", "route": "/user/login"}
    assert requests_of(after, **login, status="200") == requests_of(before, **login, status="200") + 1
    assert requests_of(after, **login, status="401") == requests_of(before, **login, status="401") + 2


async def test_a_login_to_an_unverified_address_is_counted(from_ip, local, monkeypatch):
    monkeypatch.setattr(settings, "EMAIL_VERIFICATION", "mandatory")
    client = from_ip(random_ip())
    email = (await register(client))["user"]["email"]
    before = await scrape(local)
    r = await client.post("/user/login", json={"email": email, "password": PASSWORD})
    assert_problem(r, 403, "email_unverified")
    after = await scrape(local)
    outcome = {"outcome": "email_unverified"}
    assert (
        value(after, "authservice_logins_total", **outcome)
        == value(before, "authservice_logins_total", **outcome) + 1
    )


async def test_a_throttled_login_is_counted_by_outcome_and_by_limit(from_ip, local, monkeypatch):
    monkeypatch.setattr(settings, "THROTTLE_LOGIN_ACCOUNT", limits.parse("1/hour"))
    monkeypatch.setattr(throttle_module, "_throttle", None)
    client = from_ip(random_ip())
    email = (await register(client))["user"]["email"]
    before = await scrape(local)
    assert_problem(await client.post("/user/login", json={"email": email, "password": "Wrong-1"}), 401)
    assert_problem(await client.post("/user/login", json={"email": email, "password": PASSWORD}), 429)
    after = await scrape(local)
    for name, labels in (
        ("authservice_logins_total", {"outcome": "throttled"}),
        ("authservice_throttled_total", {"limit": "login-account"}),
    ):
        assert value(after, name, **labels) == value(before, name, **labels) + 1, (name, labels)
    assert value(after, "authservice_throttled_total", limit="login-ip") == value(
        before, "authservice_throttled_total", limit="login-ip"
    )


async def test_the_hashing_pool_queue_and_its_503s(from_ip, local, monkeypatch):
    pool = passwords._pool()
    client = from_ip(random_ip())
    email = (await register(client))["user"]["email"]
    before = await scrape(local)
    # every hashing thread busy (a kind of work never measured: the pool assumes it is slow) ...
    blockers = [
        asyncio.ensure_future(pool.run(time.sleep, 0.4, work=(f"blocker {unique()}",)))
        for _ in range(pool.threads)
    ]
    await asyncio.sleep(0.05)
    # ... so a quick job waits in the queue, and the gauge says so while it does
    queued = asyncio.ensure_future(pool.run(lambda: None, work=(passwords.current_kind(),)))
    await asyncio.sleep(0.01)
    assert value(await scrape(local), "authservice_password_hash_queue_depth") == 1
    # and with no wait allowed, a login is refused: 503 overloaded
    monkeypatch.setattr(settings, "PASSWORD_HASHER_MAX_WAIT", 0)
    r = await client.post("/user/login", json={"email": email, "password": PASSWORD})
    assert_problem(r, 503, "overloaded")
    await asyncio.gather(*blockers, queued)
    after = await scrape(local)
    assert value(after, "authservice_password_hash_queue_depth") == 0
    for name, labels in (
        ("authservice_password_hash_refused_total", {"reason": "busy"}),
        ("authservice_logins_total", {"outcome": "overloaded"}),
    ):
        assert value(after, name, **labels) == value(before, name, **labels) + 1, (name, labels)


async def test_a_queued_hash_whose_caller_gives_up_leaves_the_queue(metrics_app, local):
    pool = passwords._pool()
    blockers = [
        asyncio.ensure_future(pool.run(time.sleep, 0.3, work=(f"blocker {unique()}",)))
        for _ in range(pool.threads)
    ]
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(pool.run(lambda: None, work=(passwords.current_kind(),)))
    await asyncio.sleep(0.01)
    queued.cancel()  # the client went away before a thread took it
    await asyncio.sleep(0.01)
    assert value(await scrape(local), "authservice_password_hash_queue_depth") == 0
    await asyncio.gather(*blockers)


async def test_the_outbox_backlog_is_read_at_scrape_time(metrics_app, local):
    await Mail.filter(sent_at=None, failed_at=None).delete()
    assert value(await scrape(local), "authservice_mail_outbox_backlog") == 0
    mails = [await outbox.queue(f"{unique()}@example.com", "Hello", "Text") for _ in range(3)]
    samples = await scrape(local)
    assert value(samples, "authservice_mail_outbox_backlog") == 3
    assert 0 <= value(samples, "authservice_mail_outbox_oldest_age_seconds") < 60
    await Mail.filter(id=mails[0].id).update(sent_at=outbox._now())
    await Mail.filter(id=mails[1].id).update(failed_at=outbox._now())
    assert value(await scrape(local), "authservice_mail_outbox_backlog") == 1
    await Mail.filter(id=mails[2].id).delete()


async def test_a_probe_that_fails_leaves_its_metric_out_not_the_scrape(metrics_app, local, monkeypatch):
    async def broken() -> list:
        raise ConnectionError("database away")

    monkeypatch.setattr(metrics, "_probes", [broken])
    r = await local.get("/metrics")
    assert r.status_code == 200 and "authservice_logins_total" in r.text
    assert "authservice_mail_outbox_backlog" not in r.text


async def test_the_revocation_signal_reports_in_sync(metrics_app, local):
    # set when the signal starts (with the app's lifespan): start it again under the metrics app
    await revocation.stop()
    await revocation.start()
    name = revocation.signal().name
    assert name in {"local_epoch", "process", "postgres"}  # postgres: LISTEN/NOTIFY, connected at start
    assert value(await scrape(local), "authservice_revocation_listener_in_sync", signal=name) == 1
