"""What METRICS_ENABLED costs a request, measured in-process: the ASGI app called directly, no server,
no network, so that the only difference between the two timings is the metrics middleware.

    .venv/bin/python bench/metrics_cost.py [--requests 20000] [--rounds 7] [--multiprocess]

Two apps over one SQLite database, built with METRICS_ENABLED off and on, take turns (off, on, off,
on, ...) at GET /health and at GET /user/verify with a live token (its session cached, as in the
benchmark); each prints the best round's µs per request, and the difference is the cost. With
--multiprocess the metrics go to PROMETHEUS_MULTIPROC_DIR's memory-mapped files, as with
`uvicorn --workers N`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def _receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict) -> None:
    pass


def _scope(path: str, token: str | None) -> dict:
    headers = [(b"host", b"localhost"), (b"user-agent", b"bench")]
    if token:
        headers.append((b"authorization", b"Bearer " + token.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _round(app, base: dict, requests: int) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        await app(dict(base), _receive, _send)  # a fresh scope each time: the router writes into it
    return (time.perf_counter() - started) / requests * 1e6


async def main(requests: int, rounds: int) -> None:
    import httpx

    import settings
    from app import create_app

    settings.METRICS_ENABLED = False
    off = create_app(settings.TORTOISE_ORM)
    settings.METRICS_ENABLED = True
    on = create_app(settings.TORTOISE_ORM)  # last: the metrics' hooks are on
    async with on.router.lifespan_context(on):
        transport = httpx.ASGITransport(app=on)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            password = "Bench-" + secrets.token_urlsafe(12)
            body = {"username": "bench", "email": "bench@example.com", "password": password}
            token = (await client.post("/user/register", json=body)).json()["access_token"]
            assert (await client.get("/metrics")).status_code == 200
        for path, credentials in (("/health", None), ("/user/verify", token)):
            base = _scope(path, credentials)
            await _round(off, base, requests // 10)  # warm-up: caches, code paths
            await _round(on, base, requests // 10)
            best = {"off": float("inf"), "on": float("inf")}
            for _ in range(rounds):
                for name, app in (("off", off), ("on", on)):
                    best[name] = min(best[name], await _round(app, base, requests))
            print(
                f"GET {path:<13} metrics off {best['off']:6.1f} µs   on {best['on']:6.1f} µs   "
                f"cost {best['on'] - best['off']:+5.1f} µs/request"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--multiprocess", action="store_true", help="PROMETHEUS_MULTIPROC_DIR's files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        database = f"sqlite://{scratch}/bench.sqlite3"
        os.environ.update(
            SECRET_KEY=secrets.token_urlsafe(50),
            DATABASE_URL=database,
            ALLOWED_HOSTS="localhost",
            ACCESS_LOG="false",  # the same in both; a log line would only add noise to both timings
            LOG_LEVEL="WARNING",
            MAIL_SENDER="false",
            THROTTLE_REGISTER_IP="off",
            REVOCATION_EPOCH_FILE=f"{scratch}/epoch",
            PROMETHEUS_MULTIPROC_DIR=f"{scratch}/metrics" if args.multiprocess else "",
        )
        subprocess.run([sys.executable, "manage.py", "migrate"], cwd=ROOT, check=True, capture_output=True)
        sys.path.insert(0, str(ROOT))
        asyncio.run(main(args.requests, args.rounds))
