"""Helpers every test module shares, written once: accounts, requests, problem checks, live servers.

Fixtures live in conftest.py; this module holds plain functions so tests can import them by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Corr3ct-Horse-Battery"


def postgres_url_for(base_url: str, database: str) -> str:
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@contextlib.asynccontextmanager
async def fresh_postgres_database(base_url: str, prefix: str):
    """A new PostgreSQL database on `base_url`'s server, migrated by manage.py; dropped afterwards."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(base_url.replace("postgres://", "postgresql://", 1))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = postgres_url_for(base_url, name)
        migrate(url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def migrate(database_url: str) -> None:
    """Apply the migrations the way an operator does, through manage.py."""
    env = {**os.environ, "DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def postgres_bin() -> Path | None:
    """The newest PostgreSQL server binaries installed (Debian's layout), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


class Cluster:
    """A throw-away PostgreSQL cluster of a test's own: trust authentication, no durability, a port of
    its own, listening on `listen` (127.0.0.1 unless a test names other addresses of this machine) and
    a Unix socket in its directory; never the machine's cluster.

    Its programs run as the `postgres` OS user when the test runs as root (initdb refuses root), as
    the test's own user otherwise. `settings` are extra server settings (`-c name=value`); `trusted`
    are networks allowed in without a password besides the loopback (pg_hba.conf).
    """

    def __init__(
        self,
        bin_dir: Path,
        directory: Path,
        port: int,
        database: str,
        *,
        listen: Iterable[str] = ("127.0.0.1",),
        settings: dict[str, str] | None = None,
        trusted: Iterable[str] = (),
    ) -> None:
        self.bin_dir = bin_dir
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "postgres.log"
        self.port = port
        self.database = database
        self.listen = tuple(listen)
        self.settings = dict(settings or {})
        self.trusted = tuple(trusted)
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def command(self, program: str, *args: str) -> list[str]:
        return [*self.as_user, str(self.bin_dir / program), *args]

    def pg_ctl(self, *args: str) -> list[str]:
        return self.command("pg_ctl", "-D", str(self.data), *args)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""

    def run(self, command: list[str]) -> None:
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.directory)
        assert result.returncode == 0, result.stdout + result.stderr + self.log_tail()

    async def run_async(self, command: list[str]) -> None:
        """`command` without blocking the event loop: a load may go on meanwhile."""
        process = await asyncio.create_subprocess_exec(
            *command, cwd=self.directory, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        output, _ = await process.communicate()
        assert process.returncode == 0, output.decode(errors="replace") + self.log_tail()

    def initdb(self) -> None:
        self.run(
            self.command(
                "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"
            )
        )
        if self.trusted:
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.writelines(f"host all all {network} trust\n" for network in self.trusted)

    async def start(self) -> None:
        options = " ".join(
            f"-c {name}={value}"
            for name, value in {
                "port": str(self.port),
                "listen_addresses": ",".join(self.listen),
                "unix_socket_directories": str(self.directory),
                "fsync": "off",
                "full_page_writes": "off",
                **self.settings,
            }.items()
        )
        await self.run_async(self.pg_ctl("start", "-w", "-t", "30", "-l", str(self.log), "-o", options))

    async def stop(self) -> None:
        """Fast shutdown: open transactions rolled back, connections closed, new ones refused."""
        await self.run_async(self.pg_ctl("stop", "-w", "-t", "30", "-m", "fast"))

    def running(self) -> bool:
        return subprocess.run(self.pg_ctl("status"), capture_output=True).returncode == 0

    def pids(self) -> list[int]:
        """The postmaster, then every process it started."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            if int(fields[1]) == postmaster:
                children.append(int(Path(stat).parent.name))
        return [postmaster, *children]

    async def freeze(self) -> None:
        """Every process stops where it is: connections stay open and nothing answers."""
        for pid in self.pids():  # the postmaster first: it starts no new process after
            os.kill(pid, signal.SIGSTOP)

    async def thaw(self) -> None:
        self._continue()

    def _continue(self) -> None:
        for pid in reversed(self.pids()):
            os.kill(pid, signal.SIGCONT)

    async def restore(self) -> None:
        """Running and answering, however a test left it."""
        if (self.data / "postmaster.pid").exists():
            self._continue()
        if not self.running():
            await self.start()

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._continue()  # a failed test may have left it frozen
        subprocess.run(self.pg_ctl("stop", "-m", "immediate"), capture_output=True, cwd=self.directory)
        shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, query: str = "", *, host: str | None = None, database: str | None = None) -> str:
        """The URL of the test's database (or `database`) through `host`, one of its listen addresses."""
        return f"postgres://postgres@{host or self.listen[0]}:{self.port}/{database or self.database}{query}"

    async def connect(self, database: str | None = None):
        import asyncpg

        return await asyncpg.connect(self.url(database=database).replace("postgres://", "postgresql://", 1))


@contextlib.asynccontextmanager
async def postgres_cluster(prefix: str, database: str, **options):
    """A started Cluster (keyword `options` as Cluster takes them) with `database` created and
    migrated by manage.py; removed afterwards, whatever happened. Skips the test without PostgreSQL's
    server binaries, or as root without a `postgres` OS user to run them as."""
    import pytest

    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a postgres OS user to run the cluster as")
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if owner is not None:
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    owned = Cluster(bin_dir, directory, free_port(), database, **options)
    try:
        owned.initdb()
        await owned.start()
        host, port = owned.listen[0], str(owned.port)
        owned.run(owned.command("createdb", "-h", host, "-p", port, "-U", "postgres", database))
        migrate(owned.url())
        yield owned
    finally:
        owned.remove()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen | None = None, log: Path | None = None, timeout=30.0):
    """Poll `url` until it answers 200; fail loudly (with the server's output) if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    output = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
    raise AssertionError(f"{url} never answered 200 within {timeout:.0f} s:\n{output}")


@contextlib.contextmanager
def live_server(database_url: str, log_dir: Path, *uvicorn_args: str, env: dict[str, str] | None = None):
    """The service as an operator runs it: `uvicorn app:app` in its own process; yields its base URL."""
    port = free_port()
    full_env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ACCESS_LOG": "false",
        "REVOCATION_EPOCH_FILE": str(log_dir / f"epoch-{port}"),
        **(env or {}),
    }
    log_path = log_dir / f"server-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app:app",
                "--port",
                str(port),
                "--no-access-log",
                *uvicorn_args,
            ],
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_up(base + "/health", proc, log_path)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:  # a shutdown that hangs fails the test, and ends here
                proc.kill()
                proc.wait()
                # uvicorn says what it waits for, lifecycle which part will not stop
                tail = log_path.read_text(errors="replace")[-4000:]
                raise AssertionError(f"the server did not stop within 20 s; its log ends:\n{tail}") from None


def api_paths() -> list[str]:
    """A request path for every route of create_app() (the API docs on, no web app build, so every
    route the app can have and none of the web app's) and for /metrics, which middleware answers:
    what a front such as deploy/nginx.conf must hand to the app, whatever else it serves."""
    from starlette.convertors import FloatConvertor, IntegerConvertor, PathConvertor, UUIDConvertor

    import settings
    from app import create_app
    from apps.core import metrics

    samples = {
        IntegerConvertor: 1,
        FloatConvertor: 1.5,
        UUIDConvertor: uuid.UUID(int=1),
        PathConvertor: "a/b",
    }
    saved = settings.API_DOCS, settings.FRONTEND_DIST
    settings.API_DOCS, settings.FRONTEND_DIST = True, Path(tempfile.gettempdir()) / "no-such-build"
    try:
        app = create_app(settings.tortoise_config("sqlite://:memory:"))
    finally:
        settings.API_DOCS, settings.FRONTEND_DIST = saved
    paths = {metrics.METRICS_PATH}
    for route in app.routes:  # Route and Mount alike: a path format and its parameters' convertors
        values = {
            name: convertor.to_string(samples.get(type(convertor), "x"))
            for name, convertor in route.param_convertors.items()
        }
        paths.add(route.path_format.format(**values))
    return sorted(paths)


def spa_paths() -> list[str]:
    """The web app's client-side routes (frontend/src/router.ts), children joined to their parent and
    parameterised paths (the not-found catch-all) left out: what a browser navigates to."""
    text = (ROOT / "frontend" / "src" / "router.ts").read_text()
    paths, parent = [], ""
    for path in re.findall(r"\bpath: \"([^\"]*)\"", text):
        if path.startswith("/"):
            parent = path
            paths.append(path)
        elif path:  # a child, after its parent in the file
            paths.append(parent.rstrip("/") + "/" + path)
    return [p for p in paths if ":" not in p]


def unique(prefix: str = "u") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def register(
    client, username: str | None = None, email: str | None = None, password: str = PASSWORD
) -> dict:
    username = username or unique()
    email = email or f"{username}@example.com"
    r = await client.post("/user/register", json={"username": username, "email": email, "password": password})
    assert r.status_code == 201, r.text
    return {**r.json(), "password": password}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers["content-type"]
    body = r.json()
    assert body["status"] == status and body["title"] and body["type"] == "about:blank", body
    if code is not None:
        assert body["code"] == code, body
    return body


def django_hash(password: str, hasher: str) -> str:
    """A hash made by Django's own make_password, as found in a Django project's auth_user table."""
    import django
    from django.conf import settings as django_settings

    if not django_settings.configured:
        django_settings.configure()
        django.setup()
    from django.contrib.auth.hashers import make_password

    return make_password(password, hasher=hasher)


async def user_with_hash(password_hash: str, *, is_active: bool = True):
    """An account whose password column holds `password_hash` as is (imported, legacy or unusable)."""
    from apps.user.models import User, username_key

    name = unique()
    return await User.create(
        username=name,
        username_key=username_key(name),
        email=f"{name}@example.com",
        password=password_hash,
        is_active=is_active,
    )


async def logged_in_account(client, *, is_staff: bool = False, is_superuser: bool = False) -> dict:
    """An account made as manage.py makes one (accounts.create_user), logged in: the token response
    and the account's id."""
    from apps.user import accounts

    name = unique("s")
    user = await accounts.create_user(
        name, f"{name}@example.com", PASSWORD, is_staff=is_staff, is_superuser=is_superuser
    )
    r = await client.post("/user/login", json={"username": name, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {**r.json(), "id": user.id}
