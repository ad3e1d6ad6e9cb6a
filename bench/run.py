"""The benchmark: this service against a bare Starlette hello-world and fastapi-users, in one run.

    make bench                  (or: .venv/bin/python bench/run.py --help)

Every server runs as one uvicorn worker with the same flags; wrk (Debian package `wrk`) loads it
from a separate process; servers alternate scenario by scenario, round after round (A B A B ...),
each measurement preceded by a discarded warm-up. Writes bench/results/<date>.md, latest.json and
the table in README.md. The peers live in bench/.peers (bench/setup.sh), never in the project.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PROJECT_PY = ROOT / ".venv" / "bin" / "python"
PEERS_PY = BENCH / ".peers" / "bin" / "python"
RESULTS = BENCH / "results"
PASSWORD = "bench-password-1"
UVICORN_FLAGS = [
    "--workers",
    "1",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--no-access-log",
    "--log-level",
    "warning",
]
SECRET_KEY = "bench-" + secrets.token_urlsafe(40)

TARGETS = {  # name: (comparison, threshold)
    "auth_overhead": (">=", 0.70),
    "me_vs_bare": (">=", 0.25),
    "me_vs_fastapi_users": (">=", 6.0),
    "login_vs_hash_limit": (">=", 0.85),
    "me_during_login_storm": (">=", 0.50),
    "storm_accepted_login_p99_s": ("<=", 5.0),
    "scale_1m_login_p50": ("<=", 1.2),
    "scale_1m_me_p50": ("<=", 1.2),
}


# --- wrk ------------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    command: str


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    script: str | None = None,
    script_args=(),
    token: str | None = None,
) -> WrkResult:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "--timeout", "10s"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    if script:
        cmd += ["-s", str(BENCH / "lua" / script)]
    cmd.append(url)
    if script_args:
        cmd += ["--", *map(str, script_args)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)\s*$", out, re.M))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    shown = " ".join(c if not c.startswith("Authorization") else "Authorization: Bearer <token>" for c in cmd)
    return WrkResult(
        rps,
        _ms(latency["50"]),
        _ms(latency["99"]),
        requests,
        int(non_2xx.group(1)) if non_2xx else 0,
        shown.replace(str(ROOT) + "/", ""),
    )


# --- servers --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    python: Path
    app: str
    env: dict[str, str]
    cwd: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path) -> None:
        log = open(log_dir / f"{self.name}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                str(self.python),
                "-m",
                "uvicorn",
                self.app,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *UVICORN_FLAGS,
            ],
            cwd=self.cwd,
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {log_dir / (self.name + '.log')}")
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(self.url + "/", timeout=1)
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start")

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def project(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(PROJECT_PY), *args], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True
    )
    if result.returncode:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def service_env(database_url: str, tmp: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET_KEY,
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "ACCESS_LOG": "false",
        "LOG_LEVEL": "WARNING",
        "REVOCATION_EPOCH_FILE": str(tmp / f"epoch-{abs(hash(database_url))}"),
    }


def prepare_service_db(database_url: str, users: int, tmp: Path) -> None:
    env = service_env(database_url, tmp)
    project("manage.py", "migrate", env=env)
    project("bench/seed.py", str(users), env=env)


def postgres_database(admin_url: str, name: str) -> str:
    subprocess.run(
        ["psql", admin_url + "/postgres", "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["psql", admin_url + "/postgres", "-qc", f'CREATE DATABASE "{name}"'], check=True, capture_output=True
    )
    return f"{admin_url}/{name}"


def client_address() -> str:
    """A random client address for X-Forwarded-For (honoured from 127.0.0.1, uvicorn's default
    FORWARDED_ALLOW_IPS): many users log in from many addresses, and the per-IP throttles stay on."""
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


def login(base: str, user: int) -> dict:
    r = httpx.post(
        base + "/user/login",
        json={"username": f"bench{user}", "password": PASSWORD},
        headers={"X-Forwarded-For": client_address()},
        timeout=30,
    )
    r.raise_for_status()
    return r.json()


def fastapi_users_token(base: str) -> str:
    email = f"fu{secrets.token_hex(4)}@example.com"
    httpx.post(
        base + "/auth/register", json={"email": email, "password": PASSWORD}, timeout=30
    ).raise_for_status()
    r = httpx.post(base + "/auth/jwt/login", data={"username": email, "password": PASSWORD}, timeout=30)
    r.raise_for_status()
    return r.json()["access_token"]


def median_verify_seconds(env: dict[str, str]) -> tuple[float, int]:
    """argon2id verify time on this machine now, with the service's own policy; and its thread count."""
    code = (
        "import statistics, time, settings\n"
        "from apps.user import passwords\n"
        "ctx = passwords._context(); h = ctx.hash('bench-password-1'); times = []\n"
        "for _ in range(25):\n"
        "    t = time.perf_counter(); ctx.verify('bench-password-1', h); times.append(time.perf_counter() - t)\n"
        "print(statistics.median(times), settings.PASSWORD_HASHER_THREADS)\n"
    )
    seconds, threads = project("-c", code, env=env).split()
    return float(seconds), int(threads)


# --- scenarios ------------------------------------------------------------------------------------


class Storm:
    """A login storm (wrk, 64 connections) plus a probe timing each accepted login from outside wrk."""

    def __init__(self, base: str, users: int, seconds: float) -> None:
        self.base, self.users, self.seconds = base, users, seconds
        self.accepted: list[float] = []
        self.refused = 0
        self._stop = threading.Event()

    def _probe(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                body = {"username": f"bench{secrets.randbelow(self.users) + 1}", "password": PASSWORD}
                r = client.post("/user/login", json=body, headers={"X-Forwarded-For": client_address()})
                if r.status_code == 200:
                    self.accepted.append(time.perf_counter() - started)
                else:
                    self.refused += 1
                    time.sleep(float(r.headers.get("retry-after", "1")))

    def __enter__(self) -> Storm:
        self.result: WrkResult | None = None

        def run_wrk():
            self.result = wrk(
                self.base + "/user/login",
                seconds=self.seconds,
                connections=64,
                script="login.lua",
                script_args=(self.users, PASSWORD),
            )

        self._threads = [threading.Thread(target=run_wrk)] + [
            threading.Thread(target=self._probe) for _ in range(2)
        ]
        for t in self._threads:
            t.start()
        time.sleep(3)  # let the hashing queue fill before measuring
        return self

    def __exit__(self, *exc) -> None:
        self._threads[0].join()
        self._stop.set()
        for t in self._threads[1:]:
            t.join()


def summarize(samples: list[float]) -> dict:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


def run_database(kind: str, args, tmp: Path, log_dir: Path) -> dict:
    """Every scenario on one database: returns {scenario: {"rps": [...], "p50": [...], ...}}."""
    if kind == "sqlite":
        ours_url, fu_url = f"sqlite://{tmp / 'bench.sqlite3'}", f"sqlite+aiosqlite:///{tmp / 'bench.sqlite3'}"
    else:
        ours_url = postgres_database(args.pg, "authbench")
        fu_url = ours_url.replace("postgres://", "postgresql+asyncpg://", 1)
    users = 1000
    prepare_service_db(ours_url, users, tmp)
    env = service_env(ours_url, tmp)
    # Sampled again before every login measurement: the limit is taken under the same conditions.
    verify_samples: list[float] = []
    threads = 1

    bare = Server("bare", PEERS_PY, "bare:app", {}, BENCH / "peers")
    ours = Server(f"authservice-{kind}", PROJECT_PY, "app:app", env, ROOT)
    fu = Server(
        f"fastapi-users-{kind}",
        PEERS_PY,
        "fastapi_users_app:app",
        {"DATABASE_URL": fu_url, "SECRET_KEY": SECRET_KEY},
        BENCH / "peers",
    )
    servers = [bare, ours, fu]
    results: dict[str, dict[str, list]] = {}
    commands: dict[str, str] = {}

    def record(name: str, r: WrkResult) -> None:
        entry = results.setdefault(name, {"rps": [], "p50_ms": [], "p99_ms": [], "non_2xx": []})
        entry["rps"].append(r.rps)
        entry["p50_ms"].append(r.p50_ms)
        entry["p99_ms"].append(r.p99_ms)
        entry["non_2xx"].append(r.non_2xx)
        commands[name] = r.command

    try:
        for server in servers:
            server.start(log_dir)
        access = login(ours.url, 1)["access_token"]
        fu_token = fastapi_users_token(fu.url)
        d, w, c = args.duration, args.warmup, args.connections
        read_scenarios = [
            ("bare", bare.url + "/", None),
            ("verify", ours.url + "/user/verify", access),
            ("me", ours.url + "/user/me", access),
            ("fastapi_users_me", fu.url + "/users/me", fu_token),
        ]
        for round_no in range(1, args.rounds + 1):
            print(f"[{kind}] round {round_no}/{args.rounds}", flush=True)
            for name, url, token in read_scenarios:
                wrk(url, seconds=w, connections=c, token=token)  # warm-up, discarded
                record(name, wrk(url, seconds=d, connections=c, token=token))
            seconds, threads = median_verify_seconds(env)
            verify_samples.append(seconds)
            wrk(
                ours.url + "/user/login",
                seconds=w,
                connections=16,
                script="login.lua",
                script_args=(users, PASSWORD),
            )
            record(
                "login",
                wrk(
                    ours.url + "/user/login",
                    seconds=d,
                    connections=16,
                    script="login.lua",
                    script_args=(users, PASSWORD),
                ),
            )
            tokens_file = tmp / f"refresh-{kind}-{round_no}.txt"
            tokens_file.write_text(
                "\n".join(login(ours.url, i)["refresh_token"] for i in range(1, 2 * c + 1)) + "\n"
            )
            record(
                "refresh",
                wrk(
                    ours.url + "/user/refresh-token",
                    seconds=d,
                    connections=c,
                    script="refresh.lua",
                    script_args=(tokens_file,),
                ),
            )
            record(
                "register",
                wrk(
                    ours.url + "/user/register",
                    seconds=d,
                    connections=16,
                    script="register.lua",
                    script_args=(f"{kind[0]}{round_no}{secrets.token_hex(2)}",),
                ),
            )
            with Storm(ours.url, users, seconds=d + 6) as storm:
                record(
                    "me_during_login_storm",
                    wrk(ours.url + "/user/me", seconds=d, connections=c, token=access),
                )
            record("login_storm", storm.result)
            results["login_storm"].setdefault("accepted_p99_s", []).append(
                statistics.quantiles(storm.accepted, n=100)[98] if len(storm.accepted) >= 2 else float("nan")
            )
            results["login_storm"].setdefault("probe_accepted", []).append(len(storm.accepted))
            results["login_storm"].setdefault("probe_refused", []).append(storm.refused)
        results["_rss_mb"] = ours.rss_mb()
    finally:
        for server in servers:
            server.stop()
    verify_seconds = statistics.median(verify_samples)
    results["_hash"] = {
        "median_verify_s": verify_seconds,
        "threads": threads,
        "limit_per_s": threads / verify_seconds,
        "verify_samples_s": verify_samples,
    }
    results["_commands"] = commands
    return results


def run_scale(args, tmp: Path, log_dir: Path) -> dict:
    """Login and /user/me p50 with 1,000,000 users vs 1,000 users in PostgreSQL."""
    results: dict[str, dict[str, list]] = {}
    servers = {}
    for label, count in (("1k", 1000), ("1m", 1_000_000)):
        url = postgres_database(args.pg, f"authbench_{label}")
        print(f"[scale] seeding {count} users", flush=True)
        prepare_service_db(url, count, tmp)
        servers[label] = (
            Server(f"authservice-{label}", PROJECT_PY, "app:app", service_env(url, tmp), ROOT),
            count,
        )
    try:
        for server, _ in servers.values():
            server.start(log_dir)
        tokens = {label: login(s.url, count)["access_token"] for label, (s, count) in servers.items()}
        for round_no in range(1, args.rounds + 1):
            print(f"[scale] round {round_no}/{args.rounds}", flush=True)
            for label, (server, count) in servers.items():
                wrk(server.url + "/user/me", seconds=args.warmup, connections=4, token=tokens[label])
                r = wrk(server.url + "/user/me", seconds=args.duration, connections=4, token=tokens[label])
                results.setdefault(f"me_p50_ms_{label}", []).append(r.p50_ms)
                r = wrk(
                    server.url + "/user/login",
                    seconds=args.duration,
                    connections=2,
                    script="login.lua",
                    script_args=(count, PASSWORD),
                )
                results.setdefault(f"login_p50_ms_{label}", []).append(r.p50_ms)
    finally:
        for server, _ in servers.values():
            server.stop()
    return results


# --- report ---------------------------------------------------------------------------------------


def ratios(by_db: dict, scale: dict | None) -> dict:
    out = {}
    for kind, res in by_db.items():
        med = {name: statistics.median(v["rps"]) for name, v in res.items() if not name.startswith("_")}
        out[f"auth_overhead.{kind}"] = med["verify"] / med["bare"]
        out[f"me_vs_bare.{kind}"] = med["me"] / med["bare"]
        out[f"me_vs_fastapi_users.{kind}"] = med["me"] / med["fastapi_users_me"]
        out[f"login_vs_hash_limit.{kind}"] = med["login"] / res["_hash"]["limit_per_s"]
        out[f"me_during_login_storm.{kind}"] = med["me_during_login_storm"] / med["me"]
        out[f"storm_accepted_login_p99_s.{kind}"] = statistics.median(res["login_storm"]["accepted_p99_s"])
        out[f"refresh_rps.{kind}"] = med["refresh"]
        out[f"register_rps.{kind}"] = med["register"]
        out[f"worker_rss_mb.{kind}"] = res["_rss_mb"]
    if scale:
        out["scale_1m_login_p50"] = statistics.median(scale["login_p50_ms_1m"]) / statistics.median(
            scale["login_p50_ms_1k"]
        )
        out["scale_1m_me_p50"] = statistics.median(scale["me_p50_ms_1m"]) / statistics.median(
            scale["me_p50_ms_1k"]
        )
    return out


def verdict(name: str, value: float) -> dict:
    target = TARGETS.get(name.split(".")[0])
    if not target:
        return {"value": round(value, 3)}
    op, threshold = target
    met = value >= threshold if op == ">=" else value <= threshold
    return {"value": round(value, 3), "target": f"{op} {threshold}", "met": met}


def versions() -> dict[str, str]:
    def pip_version(py: Path, package: str) -> str:
        code = f"import importlib.metadata as m; print(m.version('{package}'))"
        return subprocess.run([str(py), "-c", code], capture_output=True, text=True).stdout.strip()

    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    pg = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "python": platform.python_version(),
        "starlette": pip_version(PROJECT_PY, "starlette"),
        "tortoise-orm": pip_version(PROJECT_PY, "tortoise-orm"),
        "uvicorn": pip_version(PROJECT_PY, "uvicorn"),
        "fastapi-users": pip_version(PEERS_PY, "fastapi-users"),
        "fastapi": pip_version(PEERS_PY, "fastapi"),
        "sqlalchemy": pip_version(PEERS_PY, "sqlalchemy"),
        "wrk": (wrk_version.stdout + wrk_version.stderr).split("\n")[0].strip(),
        "postgresql": pg,
    }


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    return f"{platform.system()} {platform.release()}, {os.cpu_count()} × {cpu}, {mem_kb // 1024 // 1024} GiB"


def fmt(s: dict, unit: str = "", digits: int = 0) -> str:
    return f"{s['median']:.{digits}f}{unit} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def table(by_db: dict) -> str:
    rows = [
        "| scenario | database | requests/s, median (min–max) | p50 ms | p99 ms | non-2xx |",
        "|---|---|---|---|---|---|",
    ]
    for kind, res in by_db.items():
        for name, v in res.items():
            if name.startswith("_"):
                continue
            rows.append(
                f"| {name} | {kind} | {fmt(summarize(v['rps']))} | {statistics.median(v['p50_ms']):.2f} "
                f"| {statistics.median(v['p99_ms']):.2f} | {sum(v['non_2xx'])} |"
            )
    return "\n".join(rows)


def ratio_table(named: dict) -> str:
    rows = ["| ratio | value | target | met |", "|---|---|---|---|"]
    for name, v in named.items():
        met = "" if "met" not in v else ("yes" if v["met"] else "**no**")
        rows.append(f"| {name} | {v['value']} | {v.get('target', '')} | {met} |")
    return "\n".join(rows)


def write_results(args, by_db: dict, scale: dict | None) -> tuple[Path, str]:
    named = {name: verdict(name, value) for name, value in ratios(by_db, scale).items()}
    today = dt.date.today().isoformat()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(
        json.dumps(
            {
                "date": today,
                "machine": machine(),
                "versions": versions(),
                "ratios": named,
                "hashing": {k: v["_hash"] for k, v in by_db.items()},
            },
            indent=2,
        )
        + "\n"
    )
    summary = f"{table(by_db)}\n\n{ratio_table(named)}"
    commands = sorted({c for res in by_db.values() for c in res["_commands"].values()})
    hashing = "\n".join(
        f"- {k}: median argon2id verify {v['_hash']['median_verify_s'] * 1000:.1f} ms × "
        f"{v['_hash']['threads']} hashing thread(s) → limit {v['_hash']['limit_per_s']:.1f} logins/s"
        for k, v in by_db.items()
    )
    scale_md = ""
    if scale:
        scale_md = (
            "\n## Scale (PostgreSQL)\n\n"
            + "\n".join(f"- {k}: {', '.join(f'{x:.2f}' for x in v)} ms" for k, v in scale.items())
            + "\n"
        )
    storm = "\n".join(
        f"- {k}: probe saw {sum(v['login_storm']['probe_accepted'])} accepted and "
        f"{sum(v['login_storm']['probe_refused'])} refused (503) logins; accepted p99 per round "
        f"{', '.join(f'{x:.2f}' for x in v['login_storm']['accepted_p99_s'])} s"
        for k, v in by_db.items()
    )
    notes = BENCH / "optimisations.md"
    optimisations = notes.read_text() if notes.exists() else ""
    path = RESULTS / f"{today}.md"
    path.write_text(f"""# Benchmark {today}

Machine: {machine()}

Versions: {", ".join(f"{k} {v}" for k, v in versions().items())}

Run: `.venv/bin/python bench/run.py --rounds {args.rounds} --duration {args.duration} --warmup {args.warmup}
--connections {args.connections}`; each server one uvicorn worker with `{" ".join(UVICORN_FLAGS)}`;
wrk from a separate process; servers alternate scenario by scenario within each round; every
measurement follows a discarded warm-up of {args.warmup} s.

{summary}

## Hashing limit

{hashing}

## Login storm

/user/me measured while 64 wrk connections hammer /user/login (a 503 makes that connection wait its
Retry-After, as a well-behaved client does), and a probe times every accepted login.

{storm}
{scale_md}
{optimisations}
## Commands

{chr(10).join(f"    {c}" for c in commands)}
""")
    return path, summary


def update_readme(summary: str, path: Path) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    block = (
        f"<!-- bench:start -->\nLatest run ({path.name}, written by `make bench`):\n\n{summary}\n"
        "<!-- bench:end -->"
    )
    if "<!-- bench:start -->" in text:
        text = re.sub(r"<!-- bench:start -->.*?<!-- bench:end -->", lambda _: block, text, flags=re.S)
        readme.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds measured per scenario")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of discarded warm-up per scenario")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--no-scale", action="store_true", help="skip the 1,000,000-user PostgreSQL run")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server URL")
    args = parser.parse_args()

    missing = [
        what
        for what, ok in (
            ("wrk (apt-get install wrk)", shutil.which("wrk")),
            ("psql (apt-get install postgresql-client)", shutil.which("psql")),
            ("the project's .venv (make install)", PROJECT_PY.exists()),
            ("bench/.peers (bench/setup.sh)", PEERS_PY.exists()),
        )
        if not ok
    ]
    if missing:
        print("missing: " + "; ".join(missing), file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="authbench-") as tmp_name:
        tmp = Path(tmp_name)
        log_dir = tmp / "logs"
        log_dir.mkdir()
        try:
            by_db = {kind: run_database(kind, args, tmp, log_dir) for kind in args.databases.split(",")}
            scale = (
                None if args.no_scale or "postgres" not in args.databases else run_scale(args, tmp, log_dir)
            )
        except Exception:
            for log in sorted(log_dir.glob("*.log")):
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}", file=sys.stderr)
            raise
    path, summary = write_results(args, by_db, scale)
    update_readme(summary, path)
    print(summary)
    print(f"\nwrote {path} and {RESULTS / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
