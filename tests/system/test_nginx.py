"""deploy/nginx.conf, as shipped, in front of two uvicorn workers: Debian's real nginx, real TLS.

The deploy file is adapted only where a test must differ from a host (ports, upstream addresses,
certificate and log paths, the web app's root, plus an `X-Upstream` response header on the locations
that proxy to the app, which shows which worker answered, and that one did) and wrapped in a minimal
main configuration like Debian's (mime.types included); every substitution must match exactly once,
so a change to the file cannot silently leave a check testing something else. The web app is a
build of the test's own (a page, a hashed asset, a favicon: no Node needed), and the workers have
none, so whatever looks like the web app came from nginx. Marked `system` (`make test-system`);
without nginx these tests fail, they do not skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from apps.core import spa
from tests.helpers import PASSWORD, ROOT, api_paths, bearer, free_port, live_server, spa_paths, unique

pytestmark = pytest.mark.system

DEPLOY_CONF = ROOT / "deploy" / "nginx.conf"
SPOOFED_IP = "203.0.113.66"

# The test's web app build: what Vite makes, in miniature.
INDEX = (
    b'<!doctype html><title>test build</title><script type="module" src="/assets/app-abc123.js"></script>\n'
)
ASSET = b"console.log('app-abc123')\n"
FAVICON = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1 1"/>\n'
OUTSIDE = b"outside the build"
# what a browser sends when it navigates; an API client
HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
JSON = {"Accept": "application/json"}


def fake_build(directory: Path) -> Path:
    """A web app build in `directory`/dist, and beside it a file no request may reach."""
    dist = directory / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_bytes(INDEX)
    (dist / "assets" / "app-abc123.js").write_bytes(ASSET)
    (dist / "favicon.svg").write_bytes(FAVICON)
    (directory / "secret.txt").write_bytes(OUTSIDE)
    return dist


def substitute(text: str, pattern: str, replacement: str) -> str:
    """re.sub that insists the deploy file still has exactly one `pattern`."""
    result, count = re.subn(pattern, replacement, text)
    assert count == 1, f"deploy/nginx.conf: expected one match of {pattern!r}, found {count}"
    return result


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class EchoHandler(BaseHTTPRequestHandler):
    """The service nginx protects with auth_request: records and echoes the headers it receives."""

    seen: list[dict[str, list[str]]] = []

    def _echo(self) -> None:
        headers: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        self.seen.append(headers)
        body = json.dumps(headers).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._echo()

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._echo()

    def log_message(self, format: str, *args) -> None:  # quiet
        pass


@dataclass
class Worker:
    base: str
    log: Path

    @property
    def address(self) -> str:
        return urlsplit(self.base).netloc


@dataclass
class Front:
    base: str  # https://127.0.0.1:<port>, nginx
    certificate: Path
    workers: list[Worker]
    access_log: Path
    echo_seen: list[dict[str, list[str]]]

    def client(self) -> httpx.AsyncClient:
        context = ssl.create_default_context(cafile=str(self.certificate))
        return httpx.AsyncClient(base_url=self.base, verify=context, timeout=10)


@pytest.fixture(scope="module")
def nginx() -> str:
    # Debian puts nginx in /usr/sbin, which a non-root PATH may lack
    path = shutil.which("nginx", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if path is None:
        pytest.fail("nginx is not installed (apt-get install -y nginx): the system tests need the real one")
    return path


def mime_types(binary: str) -> Path:
    """The mime.types of this nginx, which Debian's nginx.conf includes in http { }, as the deploy
    file expects: without it every file of the web app would be served as text/plain."""
    version = subprocess.run([binary, "-V"], capture_output=True, text=True).stderr
    conf = re.search(r"--conf-path=(\S+)", version)
    path = Path(conf.group(1)).parent / "mime.types" if conf else Path("/etc/nginx/mime.types")
    assert path.is_file(), f"{path} is missing (Debian's nginx-common installs it)"
    return path


def nginx_config(
    binary: str, directory: Path, upstreams: list[str], echo: str, dist: Path
) -> tuple[Path, int, Path]:
    """The deploy file, adapted to this test, inside a main config; returns (config, https port, log)."""
    https_port, http_port = free_port(), free_port()
    cert, key = self_signed_certificate(directory)
    access_log = directory / "access.log"
    site = DEPLOY_CONF.read_text()
    site = substitute(site, r"\bserver 127\.0\.0\.1:8000;", " ".join(f"server {u};" for u in upstreams))
    site = substitute(site, r"\bserver 127\.0\.0\.1:8080;", f"server {echo};")
    site = substitute(site, r"\blisten\s+80\b", f"listen 127.0.0.1:{http_port}")
    site = substitute(site, r"\blisten\s+443\b", f"listen 127.0.0.1:{https_port}")
    site = substitute(site, r"\bssl_certificate\s+\S+;", f"ssl_certificate {cert};")
    site = substitute(site, r"\bssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};")
    site = substitute(site, r"\baccess_log\s+/[^\s;]+", f"access_log {access_log}")
    site = substitute(site, r"\n    root\s+/[^\s;]+;", f"\n    root {dist};")
    # test-only: which worker answered, on each location that proxies to the app (and only there)
    upstream = r"\g<0>\n        add_header X-Upstream $upstream_addr always;"
    site = substitute(site, r"location ~ \^/user/\(login\|[^\n{]*\{", upstream)  # the throttled auth routes
    site = substitute(site, r"location ~ \^/\(\(user\|admin\|[^\n{]*\{", upstream)  # the API
    site = substitute(site, r"location @app \{", upstream)  # what the build does not hold
    (directory / "authservice.conf").write_text(site)
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = directory / "nginx.conf"
    main.write_text(
        # As root, nginx's workers would otherwise run as nobody, who cannot enter pytest's tmp dirs.
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"daemon off;\nworker_processes 2;\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} info;\n"
        "events { worker_connections 256; }\n"
        f"http {{\n    include {mime_types(binary)};\n    default_type application/octet-stream;\n{temp}\n"
        f"    access_log {directory / 'other-access.log'};\n"
        f"    include {directory / 'authservice.conf'};\n}}\n"
    )
    return main, https_port, access_log


def nginx_command(binary: str, config: Path, *args: str) -> list[str]:
    directory = config.parent
    return [binary, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(config), *args]


@contextlib.contextmanager
def echo_server():
    EchoHandler.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", EchoHandler.seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def front(nginx, database_url, tmp_path_factory):
    """nginx with deploy/nginx.conf before two `uvicorn app:app` workers sharing one database and one
    revocation counter (as a host's workers do), with the app's access log on."""
    directory = tmp_path_factory.mktemp("nginx")
    worker_env = {
        "ACCESS_LOG": "true",
        "REVOCATION_EPOCH_FILE": str(directory / "revocation.epoch"),
        # no web app in the workers: what looks like it can only have come from nginx's root
        "FRONTEND_DIST": str(directory / "no-build"),
        "API_DOCS": "true",
    }
    proxy_args = ("--proxy-headers", "--forwarded-allow-ips", "127.0.0.1")
    with contextlib.ExitStack() as stack:
        bases = [
            stack.enter_context(live_server(database_url, directory, *proxy_args, env=worker_env))
            for _ in range(2)
        ]
        # live_server writes each worker's output to server-<port>.log in its log directory
        workers = [Worker(base, directory / f"server-{urlsplit(base).port}.log") for base in bases]
        echo, seen = stack.enter_context(echo_server())
        config, https_port, access_log = nginx_config(
            nginx, directory, [w.address for w in workers], echo, fake_build(directory)
        )
        check = subprocess.run(nginx_command(nginx, config, "-t"), capture_output=True, text=True)
        assert check.returncode == 0, f"nginx -t refused deploy/nginx.conf:\n{check.stderr}"
        output = directory / "nginx.out"
        with open(output, "wb") as out:
            proc = subprocess.Popen(nginx_command(nginx, config), stdout=out, stderr=subprocess.STDOUT)
        stack.callback(proc.wait, 20)
        stack.callback(proc.terminate)
        context = ssl.create_default_context(cafile=str(directory / "cert.pem"))
        base = f"https://127.0.0.1:{https_port}"
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/health", verify=context, timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                error_log = directory / "error.log"
                errors = error_log.read_text(errors="replace")[-4000:] if error_log.exists() else ""
                pytest.fail(
                    f"nginx never answered on {base}:\n{output.read_text(errors='replace')}\n{errors}"
                )
            time.sleep(0.1)
        yield Front(base, directory / "cert.pem", workers, access_log, seen)


def test_deploy_file_passes_nginx_t(nginx, tmp_path):
    config, _, _ = nginx_config(
        nginx, tmp_path, ["127.0.0.1:1", "127.0.0.1:2"], "127.0.0.1:3", fake_build(tmp_path)
    )
    result = subprocess.run(nginx_command(nginx, config, "-t"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr, result.stderr


def test_http2_is_offered(front):
    port = urlsplit(front.base).port
    context = ssl.create_default_context(cafile=str(front.certificate))
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"


async def _session_ips(app, user_id: int) -> list[str | None]:
    from apps.user.models import Session

    return await Session.filter(user_id=user_id).order_by("created_at").values_list("ip_address", flat=True)


async def test_client_ip_is_nginx_remote_addr_and_spoofed_forwarded_for_is_ignored(front, app):
    username = unique()
    async with front.client() as c:
        r = await c.post(
            "/user/register",
            json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
            headers={"X-Forwarded-For": SPOOFED_IP},
        )
        assert r.status_code == 201, r.text
        user_id = r.json()["user"]["id"]
        # a chain, several headers and the standard Forwarded header: none may name the client
        r = await c.post(
            "/user/login",
            json={"username": username, "password": PASSWORD},
            headers=[
                ("X-Forwarded-For", f"{SPOOFED_IP}, 127.0.0.1"),
                ("X-Forwarded-For", SPOOFED_IP),
                ("X-Real-IP", SPOOFED_IP),
                ("Forwarded", f"for={SPOOFED_IP}"),
            ],
        )
        assert r.status_code == 200, r.text
        r = await c.post(
            "/user/refresh-token",
            json={"refresh_token": r.json()["refresh_token"]},
            headers={"X-Forwarded-For": SPOOFED_IP},
        )
        assert r.status_code == 200, r.text
    # nginx's $remote_addr: this test talks to nginx from 127.0.0.1
    assert await _session_ips(app, user_id) == ["127.0.0.1", "127.0.0.1"]
    log = front.access_log.read_text()
    assert log.count("127.0.0.1 - ") >= 3 and SPOOFED_IP not in log


def logged_line(path: Path, needle: str, wait: float = 5.0) -> str | None:
    """The first line of the log at `path` holding `needle`, once it is written (None if never)."""
    deadline = time.monotonic() + wait
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        line = next((line for line in text.splitlines() if needle in line), None)
        if line is not None or time.monotonic() > deadline:
            return line
        time.sleep(0.05)


async def test_request_id_is_shared_by_nginx_and_app_logs(front):
    async with front.client() as c:
        r = await c.get("/health", headers={"X-Request-ID": "client-chosen-id"})
    assert r.status_code == 200
    request_id = r.headers["x-request-id"]
    # nginx's own id replaces the client's, so the pair of logs is always joinable
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), request_id
    line = logged_line(front.access_log, request_id)
    assert line is not None, f"request_id {request_id} not in nginx's access log"
    assert f"request_id={request_id}" in line and '"GET /health HTTP/1.1" 200' in line, line
    worker = next(w for w in front.workers if f"upstream={w.address}" in line)
    app_line = logged_line(worker.log, f"[{request_id}]")
    assert app_line is not None, f"request_id {request_id} not in the app's log of {worker.address}"
    assert "authservice.access" in app_line and '"GET /health" 200' in app_line, app_line


async def test_auth_request_sets_user_headers_and_drops_forged_ones(front):
    username = unique()
    forged = [
        ("X-User-Id", "1"),
        ("X-User-Scopes", "staff superuser"),
        ("x-user-scopes", "staff"),
        ("X-USER-ID", "1"),
        ("X-Forwarded-For", SPOOFED_IP),
        ("X-Real-IP", SPOOFED_IP),
        ("Forwarded", f"for={SPOOFED_IP}"),
    ]
    async with front.client() as c:
        r = await c.post(
            "/user/register",
            json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
        )
        assert r.status_code == 201, r.text
        user_id, access = r.json()["user"]["id"], r.json()["access_token"]
        seen_before = len(front.echo_seen)

        r = await c.get("/internal-app/reports", headers=forged)
        assert r.status_code == 401
        r = await c.get("/internal-app/reports", headers=[*forged, ("Authorization", "Bearer not.a.token")])
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer"), r.headers
        assert len(front.echo_seen) == seen_before, "an unauthenticated request got through"

        for method in ("GET", "POST"):
            r = await c.request(
                method, "/internal-app/reports", headers=[*forged, *bearer(access).items()], json={"a": 1}
            )
            assert r.status_code == 200, r.text
            seen = r.json()
            assert seen["x-user-id"] == [str(user_id)], seen
            assert seen["x-user-scopes"] == ["authenticated"], seen
            assert seen["x-forwarded-for"] == seen["x-real-ip"] == ["127.0.0.1"], seen
            assert "forwarded" not in seen, seen
    assert len(front.echo_seen) == seen_before + 2


async def test_logout_through_nginx_is_refused_by_both_workers(front):
    async def me_through_nginx(c: httpx.AsyncClient, access: str, status: int) -> set[str]:
        """Ask nginx until both workers have answered; every answer must be `status`."""
        answered: set[str] = set()
        for _ in range(20):
            r = await c.get("/user/me", headers=bearer(access))
            assert r.status_code == status, (r.status_code, r.text)
            answered.add(r.headers["x-upstream"])
            if len(answered) == len(front.workers):
                break
        return answered

    addresses = {w.address for w in front.workers}
    username = unique()
    async with front.client() as c, httpx.AsyncClient(timeout=10) as direct:
        r = await c.post(
            "/user/register",
            json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
        )
        assert r.status_code == 201, r.text
        access = r.json()["access_token"]
        assert await me_through_nginx(c, access, 200) == addresses
        for worker in front.workers:  # and straight to each worker: each has the session cached now
            r = await direct.get(worker.base + "/user/me", headers=bearer(access))
            assert r.status_code == 200, (worker.address, r.text)

        r = await c.post("/user/logout", headers=bearer(access))
        assert r.status_code == 204, r.text

        for worker in front.workers:
            r = await direct.get(worker.base + "/user/me", headers=bearer(access))
            assert r.status_code == 401, (worker.address, r.text)
            assert r.json()["code"] == "invalid_token"
        assert await me_through_nginx(c, access, 401) == addresses


# --- the web app: nginx serves the build, the app keeps the API ---------------------------------


def assert_served_by_nginx(r: httpx.Response, body: bytes, headers: dict[str, str], content_type: str):
    """`r` is the build's file `body`, with exactly apps/core/spa.py's `headers`, from nginx itself."""
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert r.content == body
    assert r.headers["content-type"].split(";")[0] == content_type, r.headers
    assert {name: r.headers.get_list(name) for name in headers} == {n: [v] for n, v in headers.items()}
    assert "x-upstream" not in r.headers, "a worker answered, not nginx"


def assert_answered_by_the_app(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert "x-upstream" in r.headers, f"nginx answered {r.request.url.path} itself: {r.status_code}"
    assert r.status_code == status, (r.request.url.path, r.status_code, r.text[:300])
    assert r.content != INDEX
    if code is not None:
        assert r.headers["content-type"] == "application/problem+json", r.headers
        assert r.json()["code"] == code, r.json()


async def test_a_browser_navigating_to_a_web_app_route_gets_the_page(front):
    async with front.client() as c:
        # every client-side route of frontend/src/router.ts, with a mail link's query, and a path the
        # router answers with its own not-found page
        for path in [*spa_paths(), "/verify-email?token=abc.def", "/reset-password?token=x", "/no/such/page"]:
            r = await c.get(path, headers=HTML)
            assert_served_by_nginx(r, INDEX, spa.PAGE_HEADERS, "text/html")
        r = await c.head("/settings/email", headers=HTML)
        assert r.status_code == 200 and r.headers["cache-control"] == spa.PAGE_HEADERS["Cache-Control"]
        # no-cache: the page is revalidated, and an unchanged one costs a 304 with the same headers
        r = await c.get("/login", headers={**HTML, "If-None-Match": r.headers["etag"]})
        assert r.status_code == 304 and r.headers["cache-control"] == spa.PAGE_HEADERS["Cache-Control"]
        assert r.headers["content-security-policy"] == spa.CONTENT_SECURITY_POLICY


async def test_the_builds_files_carry_the_apps_headers(front):
    async with front.client() as c:
        r = await c.get("/assets/app-abc123.js")
        assert_served_by_nginx(
            r, ASSET, {"Cache-Control": spa.IMMUTABLE, **spa.SAFETY_HEADERS}, "application/javascript"
        )
        assert_served_by_nginx(await c.get("/favicon.svg"), FAVICON, spa.FILE_HEADERS, "image/svg+xml")
        assert_served_by_nginx(await c.get("/index.html"), INDEX, spa.PAGE_HEADERS, "text/html")


async def test_a_missing_asset_is_the_apps_404_not_the_page(front):
    async with front.client() as c:
        for headers in (HTML, JSON, {}):
            r = await c.get("/assets/x.js", headers=headers)
            assert_answered_by_the_app(r, 404, "not_found")
            assert "immutable" not in r.headers.get("cache-control", "")


async def test_the_apis_paths_reach_the_app_whatever_the_accept(front):
    async with front.client() as c:
        assert_answered_by_the_app(await c.get("/user/me", headers=HTML), 401, "not_authenticated")
        r = await c.get("/openapi.json", headers=HTML)
        assert_answered_by_the_app(r, 200)
        assert r.json()["openapi"].startswith("3.")
        r = await c.get("/docs", headers=HTML)
        assert_answered_by_the_app(r, 200)
        assert "swagger" in r.text.lower()
        # a JSON client's unknown path, and a form posted to a page: the API's 404, as without nginx
        assert_answered_by_the_app(await c.get("/no-such-thing", headers=JSON), 404, "not_found")
        assert_answered_by_the_app(await c.post("/login", json={}, headers=HTML), 404, "not_found")
        # every route of the app, as a browser navigating there: a worker answers, never the page
        # (the throttled routes' share stays well inside their burst, which the last test needs)
        for path in api_paths():
            r = await c.get(path, headers=HTML)
            assert "x-upstream" in r.headers and r.content != INDEX, (path, r.status_code)


def raw_get(front: Front, target: str) -> tuple[int, bytes]:
    """GET `target` as written, over TLS (a client library would normalise it); (status, response)."""
    context = ssl.create_default_context(cafile=str(front.certificate))
    request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
    with (
        socket.create_connection(("127.0.0.1", urlsplit(front.base).port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(request.encode())
        response = b""
        while chunk := tls.recv(65536):
            response += chunk
    return int(response.split(b" ", 2)[1]), response


def test_nothing_outside_the_root_is_served(front):
    assert (front.certificate.parent / "secret.txt").read_bytes() == OUTSIDE  # beside the root
    assert raw_get(front, "/favicon.svg")[1].endswith(FAVICON)  # raw_get reads what nginx serves
    for target in (
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/assets/../../secret.txt",
        "/assets/%2e%2e/%2e%2e/secret.txt",
        "/assets/..%2f..%2fsecret.txt",
        "/index.html/../../secret.txt",
        "/./../secret.txt",
    ):
        status, response = raw_get(front, target)
        assert OUTSIDE not in response, target
        # nginx refuses a path above the root outright
        assert status == 400, (target, response[:200])


def auth_limit() -> tuple[int, int]:
    """(requests a second, burst) of the auth routes' limit_req in deploy/nginx.conf."""
    text = DEPLOY_CONF.read_text()
    rate = re.search(r"\blimit_req_zone\s+\$binary_remote_addr\s+zone=(\w+):\S+\s+rate=(\d+)r/s;", text)
    assert rate, "deploy/nginx.conf: no limit_req_zone keyed by $binary_remote_addr with a rate in r/s"
    burst = re.search(rf"\blimit_req\s+zone={rate.group(1)}\s+burst=(\d+)\s+nodelay;", text)
    assert burst, "deploy/nginx.conf: no `limit_req zone=... burst=N nodelay` for the auth zone"
    return int(rate.group(2)), int(burst.group(1))


def answered_by_nginx(front: Front, r: httpx.Response) -> bool:
    """True when nginx answered `r` itself, asking no worker: its access log says `upstream=-`."""
    line = logged_line(front.access_log, f"request_id={r.headers['x-request-id']}")
    assert line is not None, f"request {r.headers['x-request-id']} not in nginx's access log"
    return " upstream=- " in line


# Last in this module: it spends the auth routes' burst allowance, which the tests above draw on too.
async def test_a_burst_of_logins_meets_nginx_429_and_me_does_not(front):
    rate, burst = auth_limit()
    attempts = 2 * burst + 10
    async with front.client() as c:
        r = await c.post(
            "/user/register",
            json={
                "username": (username := unique()),
                "email": f"{username}@example.com",
                "password": PASSWORD,
            },
        )
        assert r.status_code == 201, r.text
        access = r.json()["access_token"]
        # nginx forgets `rate` requests a second: after this, whatever came before, the burst is whole
        await asyncio.sleep(burst / rate + 0.5)

        # One client address, all at once, each for a different (unknown) account: the app's own
        # throttles are off in tests (conftest.py), so every 429 here is nginx's.
        started = time.monotonic()
        answers = await asyncio.gather(
            *(
                c.post("/user/login", json={"username": unique(), "password": PASSWORD})
                for _ in range(attempts)
            )
        )
        elapsed = time.monotonic() - started
        refused = [r for r in answers if r.status_code == 429]
        passed = [r for r in answers if r.status_code != 429]
        # nodelay: the burst goes through at once, and then `rate` a second
        assert burst + 1 <= len(passed) <= burst + 1 + math.ceil(rate * elapsed) + 1, (len(passed), elapsed)
        assert refused, "no 429 from a burst over the limit"
        for r in refused:
            assert r.headers["content-type"] == "application/problem+json", r.headers
            assert r.json() == {
                "type": "about:blank",
                "title": "Too many requests",
                "status": 429,
                "code": "throttled",
                "detail": "Too many requests from this address. Try again in a second.",
            }
            assert r.headers["retry-after"] == "1" and r.headers["cache-control"] == "no-store"
            assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"]), r.headers
        assert answered_by_nginx(front, refused[0])
        # the attempts let through reached the app, with nginx's request id: 401, not a 429; with a
        # whole burst arriving at once, the app's hashing pool may shed some (its 503 `overloaded`,
        # the last line behind nginx's): that is the app answering too
        codes = {r.json()["code"] for r in passed}
        assert "invalid_credentials" in codes and codes <= {"invalid_credentials", "overloaded"}, [
            (r.status_code, r.text) for r in passed
        ]
        assert all(
            r.status_code == (401 if r.json()["code"] == "invalid_credentials" else 503) for r in passed
        )
        assert not any(answered_by_nginx(front, r) for r in passed)

        # the same burst on /user/me, a route nginx does not throttle: every one answered by the app
        answers = await asyncio.gather(*(c.get("/user/me", headers=bearer(access)) for _ in range(attempts)))
        assert [r.status_code for r in answers] == [200] * attempts, [
            r.text for r in answers if r.status_code != 200
        ]

        # Retry-After holds: a second later, a login reaches the app again
        await asyncio.sleep(1)
        r = await c.post("/user/login", json={"username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text
