"""Issue 10's "done when": passkey registration and login tested end to end with a real authenticator
emulation. Debian's Chromium (/usr/bin/chromium, never a downloaded browser) runs headless under
playwright-core (tests/e2e/passkeys.mjs) with a CDP virtual authenticator (CTAP2, internal, resident
keys, user verification); the page is what an SPA does (tests/e2e/passkeys.html), served by this test
from its own origin, http://localhost:<port> (WEBAUTHN_ORIGINS, RP id localhost); the service is a
live uvicorn on another origin, reached through CORS.

Marked `system` (make test-system; .ci/run installs chromium and runs `npm ci` in tests/e2e first):
without chromium, node or the npm packages it fails, it does not skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, bearer, live_server

pytestmark = pytest.mark.system

E2E = ROOT / "tests" / "e2e"
PAGE = E2E / "passkeys.html"
CHROMIUM = Path("/usr/bin/chromium")


class PageHandler(BaseHTTPRequestHandler):
    """The one page, and nothing else of the directory (404)."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path.split("?", 1)[0] != "/passkeys.html":
            self.send_error(404)
            return
        body = PAGE.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
        pass


@contextlib.contextmanager
def page_server():
    """The SPA's origin: a static server on the loopback (port 0: the kernel picks a free one)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_register_a_passkey_then_log_in_with_it_alone_and_as_the_second_factor(database_url, tmp_path):
    assert CHROMIUM.exists(), "no /usr/bin/chromium: apt-get install chromium"
    assert shutil.which("node"), "no node: apt-get install nodejs npm"
    assert (E2E / "node_modules" / "playwright-core").is_dir(), "run `npm ci` in tests/e2e"
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    with page_server() as page_port:
        origin = f"http://localhost:{page_port}"
        env = {
            "WEBAUTHN_RP_ID": "localhost",
            "WEBAUTHN_ORIGINS": origin,
            "CORS_ALLOWED_ORIGINS": origin,
            "FRONTEND_URL": origin,
        }
        with live_server(database_url, tmp_path, env=env) as base:
            run = subprocess.run(
                ["node", "passkeys.mjs"],
                cwd=E2E,
                env={
                    **os.environ,
                    "PAGE_URL": f"{origin}/passkeys.html?api={base}",
                    "PROFILE_DIR": str(profile),
                    "CHROMIUM": str(CHROMIUM),
                },
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
            outcome = json.loads(run.stdout.strip().splitlines()[-1])
            steps, account = outcome["steps"], outcome["account"]
            user_id = steps["registered"]["user_id"]

            # registration: a discoverable credential, kept by the authenticator for the RP
            added = steps["added"]
            assert added["status"] == 201 and added["passkey"]["name"] == "Virtual authenticator", added
            assert added["resident_key"] == "required" and added["attachment"] == "platform"
            assert steps["listed"] == [added["passkey"]]
            kept = steps["authenticator"]
            assert len(kept) == 1 and kept[0]["resident"] is True and kept[0]["rp_id"] == "localhost", kept

            # passwordless: no account named, user verified, the user handle names the account
            alone = steps["passwordless"]
            assert alone["status"] == 200 and alone["body"]["user"]["id"] == user_id, alone
            assert alone["allow_credentials"] == 0 and alone["user_verification"] == "required"
            assert alone["user_handle_sent"] is True

            # the password, then the passkey
            second = steps["second_factor"]
            assert second["mfa_required"] is True and second["methods"] == ["passkey"], second
            assert second["allow_credentials"] == 1
            assert second["status"] == 200 and second["body"]["user"]["id"] == user_id, second

            # the same browser answer twice: the challenge is spent by the first
            assert steps["replay"] == {"first": 200, "again": 401, "code": "invalid_passkey"}

            # the tokens are the service's own, and the history says what happened
            for tokens in (alone["body"], second["body"]):
                me = httpx.get(base + "/user/me", headers=bearer(tokens["access_token"]))
                assert me.status_code == 200 and me.json()["email"] == account["email"]
            history = httpx.get(base + "/user/events", headers=bearer(second["body"]["access_token"])).json()
            types = [row["type"] for row in history["results"]]
            assert types.count("login") == 3 and "passkey_added" in types and "registered" in types, types
            listed = httpx.get(base + "/user/passkeys", headers=bearer(alone["body"]["access_token"])).json()
            assert listed[0]["last_used_at"] is not None
