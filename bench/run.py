"""The benchmark: this service against two hello-world ceilings and five peers, in one run.

    make bench                  (or: .venv/bin/python bench/run.py --help)

Servers, each one process (one worker) with a virtual environment of its own under bench/.peers
(bench/setup.sh; never the project's .venv), latest releases from PyPI:

- bare Starlette and bare BlackSheep: JSON hello-worlds, the ceilings (every ratio is to Starlette's);
- this service: /user/verify (token check only), /user/me, login, refresh, register, a login storm;
- fastapi-users (JWT, bearer, SQLAlchemy): GET /users/me;
- Litestar, JWTAuth + advanced-alchemy (SQLAlchemy async): GET /me;
- Django + DRF + djangorestframework-simplejwt: GET /me (JWTAuthentication + IsAuthenticated, a
  ModelSerializer), under gunicorn (sync worker) and under uvicorn (ASGI);
- UtilMeta, its tutorial's user API (Django ORM, database session): GET /api/user, under gunicorn.

uvicorn servers run with the same flags (UVICORN_FLAGS), gunicorn ones with its default sync worker
(GUNICORN_FLAGS). Each peer's users are seeded like the service's (bench1..benchN, the same password,
each peer's default hasher; Django also argon1..argonN under Argon2PasswordHasher at the service's own
argon2 parameters, for a like-for-like login row). Before anything is measured, every current-user
route must refuse a missing and a tampered credential (401/403: claims altered with the signature
kept, signature altered, alg "none"; a session cookie altered) and accept a valid one (200); a peer
that fails, or does not start, is left out of the run with the reason in the results.

wrk (Debian package `wrk`) loads each server from a separate process; servers alternate scenario by
scenario, round after round (A B C A B C ...), each measurement preceded by a discarded warm-up.
Logins: the service's with 16 connections, as before; the peers' with 4 (enough to keep two cores
hashing; a peer has no load shedding, and a longer queue would outlive the measurement), each row
naming its hasher and parameters. Writes bench/results/<date>.md,
latest.json and the table in README.md (--no-write: print only). `--only` and `--peers` pick
scenarios and peers for a short check, e.g. `--rounds 1 --duration 2 --warmup 1 --no-scale
--only 'bare,*_me' --peers litestar`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import fnmatch
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PROJECT_PY = ROOT / ".venv" / "bin" / "python"
PEERS_DIR = BENCH / ".peers"
PEERS = ("blacksheep", "fastapi-users", "litestar", "django", "utilmeta")  # bare always runs
RESULTS = BENCH / "results"
PASSWORD = "bench-password-1"
USERS = 1000
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
GUNICORN_FLAGS = ["--workers", "1", "--log-level", "warning"]  # the default sync worker, one thread
SECRET_KEY = "bench-" + secrets.token_urlsafe(40)

TARGETS = {  # name: (comparison, threshold); issue 12's
    "verify_vs_bare": (">=", 0.9),
    "me_vs_bare": (">=", 0.6),
    "me_vs_fastest_peer": (">=", 12.0),
    "me_vs_django_gunicorn": (">=", 25.0),
    "refresh_vs_bare_gain": (">=", 2.0),
    "login_vs_hash_limit": (">=", 0.9),
    "me_during_login_storm": (">=", 0.5),
    "storm_accepted_login_p99_s": ("<=", 5.0),
    "worker_rss_mb_1m": ("<=", 120.0),
    "scale_1m_login_p50": ("<=", 1.2),
    "scale_1m_me_p50": ("<=", 1.2),
}
# refresh / bare Starlette in the run issue 12 starts from (2026-11-22): refresh_vs_bare_gain divides by it
REFRESH_VS_BARE_BEFORE = {"sqlite": 321 / 14300, "postgres": 498 / 14300}

# The current-user route of each peer, and what the tables call it.
PEER_ME = {
    "fastapi_users_me": "fastapi-users",
    "litestar_me": "Litestar + advanced-alchemy",
    "django_gunicorn_me": "Django + DRF + simplejwt (gunicorn sync)",
    "django_uvicorn_me": "Django + DRF + simplejwt (uvicorn ASGI)",
    "utilmeta_me": "UtilMeta (gunicorn sync)",
}


def peer_python(venv: str) -> Path:
    return PEERS_DIR / venv / "bin" / "python"


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
    headers: dict[str, str] | None = None,
) -> WrkResult:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "--timeout", "10s"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
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
    shown = " ".join(re.sub(r"^(Authorization|Cookie): .*", r"\1: <credential>", c) for c in cmd)
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
    gunicorn: bool = False  # gunicorn's default sync worker instead of uvicorn
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        if self.gunicorn:
            return [
                str(self.python),
                "-m",
                "gunicorn",
                self.app,
                "--bind",
                f"127.0.0.1:{self.port}",
                *GUNICORN_FLAGS,
            ]
        host = ["--host", "127.0.0.1", "--port", str(self.port)]
        return [str(self.python), "-m", "uvicorn", self.app, *host, *UVICORN_FLAGS]

    def start(self, log_dir: Path) -> None:
        log = open(log_dir / f"{self.name}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.argv(), cwd=self.cwd, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT
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

    def drain(self) -> None:
        """Wait until work queued by a finished load (a sync worker's backlog) is done."""
        time.sleep(0.5)
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(self.url + "/", timeout=120)

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


def service_hasher(env: dict[str, str]) -> dict:
    """The service's argon2 parameters, from its own settings (Django's like-for-like row uses them)."""
    code = (
        "import json, settings\n"
        "print(json.dumps({'time_cost': settings.PASSWORD_HASHER_TIME_COST,"
        " 'memory_cost': settings.PASSWORD_HASHER_MEMORY_COST,"
        " 'parallelism': settings.PASSWORD_HASHER_PARALLELISM, 'threads': settings.PASSWORD_HASHER_THREADS}))\n"
    )
    return json.loads(project("-c", code, env=env))


def describe_hash(stored: str) -> str:
    """A stored hash's algorithm and parameters, read from the hash itself."""
    if m := re.search(r"argon2(id|i|d)\$v=\d+\$m=(\d+),t=(\d+),p=(\d+)", stored):
        return f"argon2{m[1]} m={m[2]} KiB, t={m[3]}, p={m[4]}"
    if m := re.match(r"(?:\$pbkdf2-|pbkdf2_)(sha\d+)\$(\d+)\$", stored):
        return f"PBKDF2-{m[1].upper()}, {int(m[2]):,} iterations"
    if m := re.match(r"(?:bcrypt\$)?\$2[aby]?\$(\d+)\$", stored):
        return f"bcrypt, cost {m[1]}"
    return "unrecognised hash format"


# --- credentials ----------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _other(value):
    """Another user's id, of the same type as this one's."""
    if isinstance(value, int):
        return value + 1
    text = str(value)
    if text.isdigit():
        return str(int(text) + 1)
    return text[:-1] + ("0" if text[-1] != "0" else "1")


def tampered_jwts(token: str) -> list[tuple[str, dict[str, str]]]:
    """Forgeries of a valid JWT: another user's id under the original signature, an altered signature,
    and the same claims unsigned (alg "none")."""
    head, body, signature = token.split(".")
    claims = json.loads(_unb64(body))
    key = next((k for k in ("sub", "user_id", "uid", "id") if k in claims), "sub")
    forged = _b64(json.dumps({**claims, key: _other(claims.get(key, "1"))}, separators=(",", ":")).encode())
    middle = len(signature) // 2
    altered = signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1 :]
    none = _b64(json.dumps({**json.loads(_unb64(head)), "alg": "none"}, separators=(",", ":")).encode())
    return [
        (f"claim {key} changed, signature kept", bearer(f"{head}.{forged}.{signature}")),
        ("signature altered", bearer(f"{head}.{body}.{altered}")),
        ('alg "none", no signature', bearer(f"{none}.{body}.")),
    ]


def tampered_cookies(name: str, value: str) -> list[tuple[str, dict[str, str]]]:
    middle = len(value) // 2
    altered = value[:middle] + ("a" if value[middle] != "a" else "b") + value[middle + 1 :]
    return [
        (f"{name} altered", {"Cookie": f"{name}={altered}"}),
        (f"{name} made up", {"Cookie": f"{name}={secrets.token_hex(16)}"}),
    ]


def check_credentials(
    url: str, valid: dict[str, str], tampered: list[tuple[str, dict[str, str]]]
) -> str | None:
    """None if the route refuses no credential and every tampered one (401/403) and accepts the valid
    one (2xx: 200, or 204 for /user/verify); otherwise what went wrong."""
    problems = []
    with httpx.Client(timeout=60) as client:
        for label, headers in [("no credential", {}), *tampered]:
            status = client.get(url, headers=headers).status_code
            if status not in (401, 403):
                problems.append(f"{label}: {status}, expected 401/403")
        status = client.get(url, headers=valid).status_code
        if not 200 <= status < 300:
            problems.append(f"valid credential: {status}, expected 200 (204 for /user/verify)")
    return "; ".join(problems) or None


# --- peers ----------------------------------------------------------------------------------------


@dataclass
class Login:
    scenario: str
    label: str
    server: Server
    path: str
    users: int
    template: str = "bench%d"
    form: bool = False
    hasher: str = ""  # which of the hashes the peer's seeding printed the users have ("hash" if unset)

    def wrk(self, seconds: float) -> WrkResult:
        # 4 connections keep two cores hashing (or a sync worker busy) without a queue that outlives the
        # measurement (a peer's hashing has no load shedding; the service's login rows keep 16)
        connections = 4
        args = (self.users, PASSWORD, self.template, "form" if self.form else "json")
        return wrk(
            self.server.url + self.path,
            seconds=seconds,
            connections=connections,
            script="login.lua",
            script_args=args,
        )


@dataclass
class Peer:
    """A peer: its servers, how its store is seeded, its current-user routes and its login rows."""

    key: str  # its bench/.peers venv and its --peers name
    servers: list[Server]
    me: list[tuple[str, Server, str]] = field(default_factory=list)  # (scenario, server, path)
    logins: list[Login] = field(default_factory=list)
    seed: tuple[str, dict[str, str]] | None = None  # (bench/peers module, environment)
    # a valid credential for the current-user routes, and its forgeries
    credential: Callable[[Peer], tuple[dict[str, str], list]] | None = None
    describe: dict[str, str] = field(default_factory=dict)


def _jwt_credential(path: str, token_field: str, *, form: bool = False, username: str = "bench1"):
    """A peer's JWT login: POST `path` (JSON, or OAuth2's password form), the token in `token_field`."""

    def credential(peer: Peer) -> tuple[dict, list]:
        body = {"username": username, "password": PASSWORD}
        r = httpx.post(peer.servers[0].url + path, **({"data": body} if form else {"json": body}), timeout=60)
        r.raise_for_status()
        token = r.json()[token_field]
        return bearer(token), tampered_jwts(token)

    return credential


def _utilmeta_credential(peer: Peer) -> tuple[dict, list]:
    r = httpx.post(
        peer.servers[0].url + "/api/user/login", json={"username": "bench1", "password": PASSWORD}, timeout=60
    )
    r.raise_for_status()
    session = r.cookies["sessionid"]
    return {"Cookie": f"sessionid={session}"}, tampered_cookies("sessionid", session)


def make_peers(kind: str, args, tmp: Path, ours_url: str, argon2: dict) -> list[Peer]:
    """The selected peers for one database: SQLite files in tmp, or PostgreSQL databases of their own
    (fastapi-users shares the service's database, in a table of its own, as before)."""
    cwd = BENCH / "peers"
    selected = [p for p in args.peers.split(",") if p]

    def db(name: str, scheme: str) -> str:
        if kind == "sqlite":
            path = tmp / f"{name}.sqlite3"
            return f"{scheme}:///{path}" if scheme else str(path)
        url = postgres_database(args.pg, f"authbench_{name}") if name != "bench" else ours_url
        return url.replace("postgres://", f"{scheme}://", 1) if scheme else url

    peers = []
    if "blacksheep" in selected:
        peers.append(
            Peer(
                "blacksheep", [Server("blacksheep", peer_python("blacksheep"), "blacksheep_app:app", {}, cwd)]
            )
        )
    if "fastapi-users" in selected:
        env = {"DATABASE_URL": db("bench", "sqlite+aiosqlite" if kind == "sqlite" else "postgresql+asyncpg")}
        env["SECRET_KEY"] = SECRET_KEY
        fu = Server(f"fastapi-users-{kind}", peer_python("fastapi-users"), "fastapi_users_app:app", env, cwd)
        peers.append(
            Peer(
                "fastapi-users",
                [fu],
                me=[("fastapi_users_me", fu, "/users/me")],
                logins=[
                    Login(
                        "fastapi_users_login",
                        "fastapi-users",
                        fu,
                        "/auth/jwt/login",
                        USERS,
                        "bench%d@example.com",
                        form=True,
                    )
                ],
                seed=("fastapi_users_app.py", env),
                credential=_jwt_credential(
                    "/auth/jwt/login", "access_token", form=True, username="bench1@example.com"
                ),
                describe={"fastapi_users_me": "fastapi-users: GET /users/me, JWT bearer, SQLAlchemy"},
            )
        )
    if "litestar" in selected:
        env = {
            "DATABASE_URL": db("litestar", "sqlite+aiosqlite" if kind == "sqlite" else "postgresql+asyncpg")
        }
        env["SECRET_KEY"] = SECRET_KEY
        ls = Server(f"litestar-{kind}", peer_python("litestar"), "litestar_app:app", env, cwd)
        peers.append(
            Peer(
                "litestar",
                [ls],
                me=[("litestar_me", ls, "/me")],
                logins=[Login("litestar_login", "Litestar", ls, "/login", USERS)],
                seed=("litestar_app.py", env),
                credential=_jwt_credential("/login", "token"),
                describe={"litestar_me": "Litestar: GET /me, JWTAuth, user read through advanced-alchemy"},
            )
        )
    if "django" in selected:
        env = {"DJANGO_DATABASE": db("django", ""), "SECRET_KEY": SECRET_KEY}
        env |= {f"ARGON2_{k.upper()}": str(argon2[k]) for k in ("time_cost", "memory_cost", "parallelism")}
        py = peer_python("django")
        gunicorn = Server(f"django-gunicorn-{kind}", py, "django_app:application", env, cwd, gunicorn=True)
        asgi = Server(
            f"django-uvicorn-{kind}", py, "django_app:asgi_application", {**env, "DJANGO_SERVER": "asgi"}, cwd
        )
        argon = Server(
            f"django-argon2-{kind}",
            py,
            "django_app:application",
            {**env, "DJANGO_HASHER": "argon2"},
            cwd,
            gunicorn=True,
        )
        peers.append(
            Peer(
                "django",
                [gunicorn, asgi, argon],
                me=[("django_gunicorn_me", gunicorn, "/me"), ("django_uvicorn_me", asgi, "/me")],
                logins=[
                    Login(
                        "django_gunicorn_login",
                        "Django (gunicorn)",
                        gunicorn,
                        "/login",
                        USERS,
                        hasher="default",
                    ),
                    Login(
                        "django_argon2_login",
                        "Django (gunicorn) at the service's argon2 parameters",
                        argon,
                        "/login",
                        USERS,
                        "argon%d",
                        hasher="argon2",
                    ),
                ],
                seed=("django_app.py", env),
                credential=_jwt_credential("/login", "access"),
                describe={
                    "django_gunicorn_me": "Django + DRF + simplejwt: GET /me, gunicorn sync worker",
                    "django_uvicorn_me": "Django + DRF + simplejwt: GET /me, uvicorn ASGI",
                },
            )
        )
    if "utilmeta" in selected:
        env = {"UTILMETA_DATABASE": db("utilmeta", ""), "SECRET_KEY": SECRET_KEY}
        um = Server(f"utilmeta-{kind}", peer_python("utilmeta"), "utilmeta_app:app", env, cwd, gunicorn=True)
        peers.append(
            Peer(
                "utilmeta",
                [um],
                me=[("utilmeta_me", um, "/api/user")],
                logins=[Login("utilmeta_login", "UtilMeta (gunicorn)", um, "/api/user/login", USERS)],
                seed=("utilmeta_app.py", env),
                credential=_utilmeta_credential,
                describe={
                    "utilmeta_me": "UtilMeta tutorial: GET /api/user, DB session cookie, gunicorn sync"
                },
            )
        )
    return peers


def seed_peer(peer: Peer, users: int) -> dict[str, str]:
    """Run the peer's seeding in its own venv; returns {"hash" or a hasher's name: stored hash}."""
    module, env = peer.seed
    result = subprocess.run(
        [str(peer_python(peer.key)), module, "seed", str(users)],
        cwd=BENCH / "peers",
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise RuntimeError(f"seeding {peer.key} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


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


def selected(args, scenario: str) -> bool:
    return any(fnmatch.fnmatchcase(scenario, pattern) for pattern in args.only.split(","))


def run_database(kind: str, args, tmp: Path, log_dir: Path) -> dict:
    """Every scenario on one database: returns {scenario: {"rps": [...], "p50": [...], ...}} and, under
    keys starting with "_", the hash limit, the rows' descriptions, the peers left out and why."""
    if kind == "sqlite":
        ours_url = f"sqlite://{tmp / 'bench.sqlite3'}"
    else:
        ours_url = postgres_database(args.pg, "authbench")
    prepare_service_db(ours_url, USERS, tmp)
    env = service_env(ours_url, tmp)
    argon2 = service_hasher(env)
    # Sampled again before every login measurement: the limit is taken under the same conditions.
    verify_samples: list[float] = []
    threads = argon2["threads"]

    bare = Server("bare", peer_python("bare"), "bare:app", {}, BENCH / "peers")
    ours = Server(f"authservice-{kind}", PROJECT_PY, "app:app", env, ROOT)
    peers = [
        peer
        for peer in make_peers(kind, args, tmp, ours_url, argon2)
        if peer.key == "blacksheep"
        and selected(args, "blacksheep")
        or any(selected(args, name) for name, _, _ in peer.me)
        or any(selected(args, login.scenario) for login in peer.logins)
    ]
    results: dict[str, dict[str, list]] = {}
    commands: dict[str, str] = {}
    excluded: dict[str, str] = {}
    ours_hasher = (
        f"argon2id m={argon2['memory_cost']} KiB, t={argon2['time_cost']}, p={argon2['parallelism']}"
        f" ({threads} hashing thread(s))"
    )
    describe = {
        "bare": "Starlette JSON hello-world (the ceiling)",
        "blacksheep": "BlackSheep JSON hello-world (a second ceiling)",
        "verify": "this service: GET /user/verify (token check, no query)",
        "me": "this service: GET /user/me",
        "login": f"this service: POST /user/login, {ours_hasher}",
        "refresh": "this service: POST /user/refresh-token",
        "register": "this service: POST /user/register",
        "me_during_login_storm": "this service: GET /user/me while login_storm runs",
        "login_storm": "this service: POST /user/login, 64 connections",
    }

    def record(name: str, r: WrkResult) -> None:
        entry = results.setdefault(name, {"rps": [], "p50_ms": [], "p99_ms": [], "non_2xx": []})
        entry["rps"].append(r.rps)
        entry["p50_ms"].append(r.p50_ms)
        entry["p99_ms"].append(r.p99_ms)
        entry["non_2xx"].append(r.non_2xx)
        commands[name] = r.command

    def leave_out(peer: Peer, reason: str) -> None:
        print(f"[{kind}] {peer.key} left out: {reason}", file=sys.stderr, flush=True)
        excluded[peer.key] = reason
        for server in peer.servers:
            server.stop()

    running: list[Peer] = []
    try:
        for server in (bare, ours):
            server.start(log_dir)
        access = login(ours.url, 1)["access_token"]
        for path in ("/user/me", "/user/verify"):
            problem = check_credentials(ours.url + path, bearer(access), tampered_jwts(access))
            if problem:
                raise RuntimeError(f"the service's {path} failed its credential checks: {problem}")
        d, w, c = args.duration, args.warmup, args.connections
        read_scenarios = [
            ("bare", bare.url + "/", None),
            ("verify", ours.url + "/user/verify", bearer(access)),
            ("me", ours.url + "/user/me", bearer(access)),
        ]
        peer_logins: list[Login] = []
        for peer in peers:
            try:
                hashes = seed_peer(peer, USERS) if peer.seed else {}
                for server in peer.servers:
                    server.start(log_dir)
                if peer.key == "blacksheep":
                    read_scenarios.append(("blacksheep", peer.servers[0].url + "/", None))
                    running.append(peer)
                    continue
                valid, tampered = peer.credential(peer)
                problems = [
                    f"{path}: {problem}"
                    for _, server, path in peer.me
                    if (problem := check_credentials(server.url + path, valid, tampered))
                ]
                if problems:
                    leave_out(peer, "credential checks failed: " + "; ".join(problems))
                    continue
            except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported, not fatal
                leave_out(peer, f"{type(exc).__name__}: {str(exc).strip()[:600]}")
                continue
            running.append(peer)
            describe.update(peer.describe)
            read_scenarios += [(name, server.url + path, valid) for name, server, path in peer.me]
            for entry in peer.logins:
                stored = hashes.get(entry.hasher or "hash", "")
                describe[entry.scenario] = f"{entry.label}: POST {entry.path}, {describe_hash(stored)}"
                peer_logins.append(entry)
        read_scenarios = [s for s in read_scenarios if selected(args, s[0])]
        peer_logins = [entry for entry in peer_logins if selected(args, entry.scenario)]

        for round_no in range(1, args.rounds + 1):
            print(f"[{kind}] round {round_no}/{args.rounds}", flush=True)
            for name, url, headers in read_scenarios:
                wrk(url, seconds=w, connections=c, headers=headers)  # warm-up, discarded
                record(name, wrk(url, seconds=d, connections=c, headers=headers))
            if selected(args, "login"):
                seconds, threads = median_verify_seconds(env)
                verify_samples.append(seconds)
                wrk(
                    ours.url + "/user/login",
                    seconds=w,
                    connections=16,
                    script="login.lua",
                    script_args=(USERS, PASSWORD),
                )
                record(
                    "login",
                    wrk(
                        ours.url + "/user/login",
                        seconds=d,
                        connections=16,
                        script="login.lua",
                        script_args=(USERS, PASSWORD),
                    ),
                )
            for entry in peer_logins:
                entry.wrk(w)  # warm-up, discarded
                entry.server.drain()
                record(entry.scenario, entry.wrk(d))
                entry.server.drain()
            if selected(args, "refresh"):
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
            if selected(args, "register"):
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
            if selected(args, "login_storm"):
                with Storm(ours.url, USERS, seconds=d + 6) as storm:
                    record(
                        "me_during_login_storm",
                        wrk(ours.url + "/user/me", seconds=d, connections=c, headers=bearer(access)),
                    )
                record("login_storm", storm.result)
                results["login_storm"].setdefault("accepted_p99_s", []).append(
                    statistics.quantiles(storm.accepted, n=100)[98]
                    if len(storm.accepted) >= 2
                    else float("nan")
                )
                results["login_storm"].setdefault("probe_accepted", []).append(len(storm.accepted))
                results["login_storm"].setdefault("probe_refused", []).append(storm.refused)
        results["_rss_mb"] = ours.rss_mb()
    finally:
        for server in (bare, ours, *(s for peer in peers for s in peer.servers)):
            server.stop()
    if verify_samples:
        verify_seconds = statistics.median(verify_samples)
        results["_hash"] = {
            "median_verify_s": verify_seconds,
            "threads": threads,
            "limit_per_s": threads / verify_seconds,
            "verify_samples_s": verify_samples,
            "parameters": ours_hasher,
        }
    results["_describe"] = {name: describe.get(name, name) for name in results if not name.startswith("_")}
    results["_excluded"] = excluded
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
                headers = bearer(tokens[label])
                wrk(server.url + "/user/me", seconds=args.warmup, connections=4, headers=headers)
                r = wrk(server.url + "/user/me", seconds=args.duration, connections=4, headers=headers)
                results.setdefault(f"me_p50_ms_{label}", []).append(r.p50_ms)
                r = wrk(
                    server.url + "/user/login",
                    seconds=args.duration,
                    connections=2,
                    script="login.lua",
                    script_args=(count, PASSWORD),
                )
                results.setdefault(f"login_p50_ms_{label}", []).append(r.p50_ms)
        results["_rss_mb_1m"] = servers["1m"][0].rss_mb()
    finally:
        for server, _ in servers.values():
            server.stop()
    return results


# --- report ---------------------------------------------------------------------------------------


def ratios(by_db: dict, scale: dict | None) -> dict[str, tuple[float, str]]:
    """{name: (value, note)}; a ratio whose scenarios were not run (--only, a peer left out) is absent."""
    out: dict[str, tuple[float, str]] = {}
    for kind, res in by_db.items():
        med = {name: statistics.median(v["rps"]) for name, v in res.items() if not name.startswith("_")}

        def put(name: str, a: str, b: str, note: str = "", divisor: float = 1.0, med=med, kind=kind) -> None:
            if med.get(a) and med.get(b):
                out[f"{name}.{kind}"] = (med[a] / med[b] / divisor, note)

        put("verify_vs_bare", "verify", "bare")
        put("me_vs_bare", "me", "bare")
        peers_me = {name: med[name] for name in PEER_ME if med.get(name)}
        if peers_me:
            fastest = max(peers_me, key=peers_me.get)
            put("me_vs_fastest_peer", "me", fastest, f"fastest peer: {PEER_ME[fastest]} ({fastest})")
        put("me_vs_django_gunicorn", "me", "django_gunicorn_me")
        put("me_vs_fastapi_users", "me", "fastapi_users_me")
        put("blacksheep_vs_bare", "blacksheep", "bare", "the second ceiling")
        put(
            "refresh_vs_bare_gain",
            "refresh",
            "bare",
            f"(refresh / bare) ÷ {REFRESH_VS_BARE_BEFORE[kind]:.4f}, the 2026-11-22 ratio",
            divisor=REFRESH_VS_BARE_BEFORE[kind],
        )
        if med.get("login") and "_hash" in res:
            out[f"login_vs_hash_limit.{kind}"] = (med["login"] / res["_hash"]["limit_per_s"], "")
        put("login_vs_django_argon2", "login", "django_argon2_login", "the same argon2 parameters")
        put("me_during_login_storm", "me_during_login_storm", "me")
        if "login_storm" in res:
            out[f"storm_accepted_login_p99_s.{kind}"] = (
                statistics.median(res["login_storm"]["accepted_p99_s"]),
                "",
            )
        for name in ("refresh", "register"):
            if med.get(name):
                out[f"{name}_rps.{kind}"] = (med[name], "")
        out[f"worker_rss_mb.{kind}"] = (res["_rss_mb"], "after this database's scenarios")
    if scale:
        for name in ("login", "me"):
            out[f"scale_1m_{name}_p50"] = (
                statistics.median(scale[f"{name}_p50_ms_1m"]) / statistics.median(scale[f"{name}_p50_ms_1k"]),
                "",
            )
        out["worker_rss_mb_1m"] = (scale["_rss_mb_1m"], "the 1,000,000-user worker after its run")
    return out


def verdict(name: str, value: float, note: str = "") -> dict:
    out = {"value": round(value, 3)} | ({"note": note} if note else {})
    target = TARGETS.get(name.split(".")[0])
    if not target:
        return out
    op, threshold = target
    met = value >= threshold if op == ">=" else value <= threshold
    return out | {"target": f"{op} {threshold}", "met": met}


VERSIONS = {  # venv: packages whose versions the results record
    "bare": ("starlette", "uvicorn"),
    "blacksheep": ("blacksheep", "uvicorn"),
    "fastapi-users": ("fastapi-users", "fastapi", "sqlalchemy", "pwdlib", "argon2-cffi", "uvicorn"),
    "litestar": ("litestar", "advanced-alchemy", "sqlalchemy", "argon2-cffi", "uvicorn"),
    "django": (
        "django",
        "djangorestframework",
        "djangorestframework-simplejwt",
        "gunicorn",
        "psycopg",
        "uvicorn",
    ),
    "utilmeta": ("utilmeta", "django", "gunicorn", "psycopg"),
}


def versions() -> dict[str, str]:
    def pip_version(py: Path, package: str) -> str:
        if not py.exists():
            return "not installed"
        code = f"import importlib.metadata as m; print(m.version('{package}'))"
        return subprocess.run([str(py), "-c", code], capture_output=True, text=True).stdout.strip() or "?"

    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    pg = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
    out = {
        "python": platform.python_version(),
        "starlette": pip_version(PROJECT_PY, "starlette"),
        "tortoise-orm": pip_version(PROJECT_PY, "tortoise-orm"),
        "uvicorn": pip_version(PROJECT_PY, "uvicorn"),
    }
    for venv, packages in VERSIONS.items():
        for package in packages:
            out[f"{venv}/{package}"] = pip_version(peer_python(venv), package)
    out["peers' python"] = subprocess.run(
        [str(peer_python("bare")), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    out["wrk"] = (wrk_version.stdout + wrk_version.stderr).split("\n")[0].strip()
    out["postgresql"] = pg
    return out


def versions_line(found: dict[str, str]) -> str:
    """One line: the service's versions, then each peer venv's."""
    groups: dict[str, list[str]] = {}
    for key, version in found.items():
        venv, _, package = key.rpartition("/")
        groups.setdefault(venv or "", []).append(f"{package} {version}")
    return "; ".join(
        f"{venv}: {', '.join(items)}" if venv else ", ".join(items) for venv, items in groups.items()
    )


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
    """One row per scenario, the databases side by side."""
    kinds = list(by_db)
    describe: dict[str, str] = {}
    for res in by_db.values():
        describe |= res["_describe"]
    head = "| scenario | what | " + " | ".join(
        f"{k} req/s, median (min–max) | p50 / p99 ms | non-2xx" for k in kinds
    )
    rows = [head + " |", "|---|---|" + "---|---|---|" * len(kinds)]
    for name, what in describe.items():
        cells = []
        for kind in kinds:
            v = by_db[kind].get(name)
            if not v:
                cells.append("– | – | –")
                continue
            cells.append(
                f"{fmt(summarize(v['rps']))} | {statistics.median(v['p50_ms']):.1f} / "
                f"{statistics.median(v['p99_ms']):.1f} | {sum(v['non_2xx'])}"
            )
        rows.append(f"| {name} | {what} | {' | '.join(cells)} |")
    return "\n".join(rows)


def ratio_table(named: dict) -> str:
    rows = ["| ratio | value | target | met | note |", "|---|---|---|---|---|"]
    for name, v in named.items():
        met = "" if "met" not in v else ("yes" if v["met"] else "**no**")
        rows.append(f"| {name} | {v['value']} | {v.get('target', '')} | {met} | {v.get('note', '')} |")
    return "\n".join(rows)


def left_out(by_db: dict) -> str:
    lines = [
        f"- {peer} ({kind}): {reason}"
        for kind, res in by_db.items()
        for peer, reason in res["_excluded"].items()
    ]
    return ("Left out of this run:\n\n" + "\n".join(lines) + "\n") if lines else ""


def write_results(args, by_db: dict, scale: dict | None, write: bool = True) -> tuple[Path, str]:
    named = {name: verdict(name, value, note) for name, (value, note) in ratios(by_db, scale).items()}
    today = dt.date.today().isoformat()
    found = versions()
    summary = f"{table(by_db)}\n\n{ratio_table(named)}\n"
    if excluded := left_out(by_db):
        summary += f"\n{excluded}"
    summary += f"\nVersions: {versions_line(found)}\n"
    path = RESULTS / f"{today}.md"
    if not write:
        return path, summary
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(
        json.dumps(
            {
                "date": today,
                "machine": machine(),
                "versions": found,
                "ratios": named,
                "rows": {name: what for res in by_db.values() for name, what in res["_describe"].items()},
                "left_out": {kind: res["_excluded"] for kind, res in by_db.items() if res["_excluded"]},
                "hashing": {k: v["_hash"] for k, v in by_db.items() if "_hash" in v},
            },
            indent=2,
        )
        + "\n"
    )
    commands = sorted({c for res in by_db.values() for c in res["_commands"].values()})
    hashing = "\n".join(
        f"- {k}: median argon2id verify {v['_hash']['median_verify_s'] * 1000:.1f} ms × "
        f"{v['_hash']['threads']} hashing thread(s) → limit {v['_hash']['limit_per_s']:.1f} logins/s"
        for k, v in by_db.items()
        if "_hash" in v
    )
    scale_md = ""
    if scale:
        scale_md = (
            "\n## Scale (PostgreSQL)\n\n"
            + "\n".join(
                f"- {k}: {', '.join(f'{x:.2f}' for x in v)} ms"
                for k, v in scale.items()
                if not k.startswith("_")
            )
            + f"\n- worker RSS at 1,000,000 users after the run: {scale['_rss_mb_1m']:.1f} MB\n"
        )
    storm = "\n".join(
        f"- {k}: probe saw {sum(v['login_storm']['probe_accepted'])} accepted and "
        f"{sum(v['login_storm']['probe_refused'])} refused (503) logins; accepted p99 per round "
        f"{', '.join(f'{x:.2f}' for x in v['login_storm']['accepted_p99_s'])} s"
        for k, v in by_db.items()
        if "login_storm" in v
    )
    notes = BENCH / "optimisations.md"
    optimisations = notes.read_text() if notes.exists() else ""
    path.write_text(f"""# Benchmark {today}

Machine: {machine()}

Versions: {versions_line(found)}

Run: `.venv/bin/python bench/run.py --rounds {args.rounds} --duration {args.duration} --warmup {args.warmup}
--connections {args.connections}`; each server one process: uvicorn with `{" ".join(UVICORN_FLAGS)}`,
gunicorn with `{" ".join(GUNICORN_FLAGS)}` (its default sync worker); wrk from a separate process;
servers alternate scenario by scenario within each round; every measurement follows a discarded
warm-up of {args.warmup} s. Logins: the service's 16 connections, the peers' 4 (enough to keep two
cores hashing; a peer has no load shedding). Before being measured, every current-user route refused a missing credential and
forged ones (another user's id under the original signature, an altered signature, alg "none"; for
UtilMeta's session cookie, an altered and a made-up one) with 401/403 and accepted a valid one.

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
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"peers to run, comma-separated (default: all of {','.join(PEERS)})",
    )
    parser.add_argument(
        "--only",
        default="*",
        help="scenarios to measure, comma-separated shell patterns (e.g. 'bare,me,*_me'); default all",
    )
    parser.add_argument("--logs", type=Path, help="copy the servers' logs into this directory at the end")
    parser.add_argument(
        "--no-write",
        action="store_true",
        help="print the tables only: no results file, latest.json or README",
    )
    args = parser.parse_args()

    unknown = [p for p in args.peers.split(",") if p and p not in PEERS]
    if unknown:
        parser.error(f"unknown peer(s): {', '.join(unknown)} (known: {', '.join(PEERS)})")
    venvs = ["bare", *(p for p in args.peers.split(",") if p)]
    missing = [
        what
        for what, ok in (
            ("wrk (apt-get install wrk)", shutil.which("wrk")),
            ("psql (apt-get install postgresql-client)", shutil.which("psql")),
            ("the project's .venv (make install)", PROJECT_PY.exists()),
            *((f"bench/.peers/{v} (bench/setup.sh)", peer_python(v).exists()) for v in venvs),
        )
        if not ok
    ]
    if missing:
        print("missing: " + "; ".join(missing), file=sys.stderr)
        return 2
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="authbench-") as tmp_name:
        tmp = Path(tmp_name)
        log_dir = tmp / "logs"
        log_dir.mkdir()
        try:
            by_db = {kind: run_database(kind, args, tmp, log_dir) for kind in args.databases.split(",")}
            scale = (
                None
                if args.no_scale or "postgres" not in args.databases or not selected(args, "scale")
                else run_scale(args, tmp, log_dir)
            )
        except Exception:
            if args.logs:
                shutil.copytree(log_dir, args.logs, dirs_exist_ok=True)
            for log in sorted(log_dir.glob("*.log")):
                print(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}", file=sys.stderr)
            raise
        if args.logs:
            shutil.copytree(log_dir, args.logs, dirs_exist_ok=True)
        for kind, res in by_db.items():  # a peer left out: its server's last words
            for peer in res["_excluded"]:
                for log in sorted(log_dir.glob(f"{peer}*-{kind}.log")):
                    print(f"--- {log.name}\n{log.read_text(errors='replace')[-1500:]}", file=sys.stderr)
    path, summary = write_results(args, by_db, scale, write=not args.no_write)
    if not args.no_write:
        update_readme(summary, path)
    print(summary)
    print(f"\n{time.monotonic() - started:.0f} s")
    if not args.no_write:
        print(f"wrote {path} and {RESULTS / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
