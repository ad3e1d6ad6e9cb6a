"""Metrics with several workers (issue 9, point 5): `uvicorn --workers 2` with PROMETHEUS_MULTIPROC_DIR,
as the README says to run it. Whichever worker answers a scrape reports the requests of both; what an
earlier run left in the directory is not counted; every line a worker logs is JSON (LOG_FORMAT=json).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import live_server

HEALTH_COUNT = (
    "authservice_http_request_duration_seconds_count",
    {"method": "GET", "route": "/health", "status": "200"},
)


def fresh(base: str, path: str) -> httpx.Response:
    # a new connection per request, so the kernel spreads them over both workers
    with httpx.Client(base_url=base) as c:
        return c.get(path)


def worker_of(response: httpx.Response) -> str:
    # A generated request id is a random per-process prefix (16 hex digits) and a counter.
    return response.headers["x-request-id"][:16]


def sample(text: str, name: str, labels: dict[str, str]) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


def leave_an_earlier_run(directory) -> None:
    """What a server that stopped leaves: a worker's counter file (here: 1000 successful logins)."""
    code = (
        "from prometheus_client import Counter; "
        "Counter('authservice_logins_total', 'x', ['outcome']).labels('success').inc(1000)"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    assert list(directory.glob("counter_*.db"))


def test_a_scrape_answered_by_either_worker_reports_both_workers_requests(database_url, tmp_path):
    directory = tmp_path / "prometheus"
    directory.mkdir()
    leave_an_earlier_run(directory)
    env = {
        "METRICS_ENABLED": "true",
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "LOG_FORMAT": "json",
        "ACCESS_LOG": "true",
    }
    with live_server(database_url, tmp_path, "--workers", "2", env=env) as base:
        deadline = time.monotonic() + 20
        while len(list(directory.glob("worker_*.alive"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(list(directory.glob("worker_*.alive"))) == 2, "the second worker never started"

        before = sample(fresh(base, "/metrics").text, *HEALTH_COUNT)
        served = [fresh(base, "/health") for _ in range(60)]
        assert [r.status_code for r in served] == [200] * 60
        workers = {worker_of(r) for r in served}
        assert len(workers) == 2, "one worker answered everything: the test proves nothing"

        scrapers, counts = set(), set()
        for _ in range(60):
            r = fresh(base, "/metrics")
            assert r.status_code == 200
            scrapers.add(worker_of(r))
            counts.add(sample(r.text, *HEALTH_COUNT))
            if scrapers == workers:
                break
        assert scrapers == workers, "one worker answered every scrape: the test proves nothing"
        assert counts == {before + 60}, "a scrape did not report both workers' requests"

        text = fresh(base, "/metrics").text
        assert (
            sample(text, "authservice_logins_total", {"outcome": "success"}) == 0
        )  # the earlier run's 1000 are gone
        # PostgreSQL: each worker's LISTEN connection (REVOCATION_SIGNAL=auto); SQLite: the host's file
        signal = "local_epoch" if database_url.startswith("sqlite") else "postgres"
        assert sample(text, "authservice_revocation_listener_in_sync", {"signal": signal}) == 1
        assert sample(text, "authservice_password_hash_queue_depth", {}) == 0

    # LOG_FORMAT=json: each worker line is one JSON object (uvicorn's master, which never loads the
    # app, prints its few lines of its own)
    log = next(tmp_path.glob("server-*.log")).read_text()
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    health = [e for e in entries if e.get("path") == "/health" and e.get("logger") == "authservice.access"]
    assert len(health) >= 60 and {e["request_id"][:16] for e in health} >= workers
    assert all(e["client_ip"] == "127.0.0.1" for e in health)
    assert not [line for line in log.splitlines() if "/health" in line and not line.startswith("{")]
    # the workers' stop took their live gauges with them
    assert not list(directory.glob("gauge_live*.db")) and not list(directory.glob("worker_*.alive"))
