"""The README's curl and httpie walkthroughs work as written, against a real uvicorn server."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, live_server, migrate


def walkthrough(tool: str) -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- walkthrough:{tool}\b.*?-->\s*```bash\n(.*?)```", readme, re.S)
    assert match, f"the {tool} walkthrough block is missing from README.md"
    return match.group(1)


def run_walkthrough(tool: str, base: str, **env: str) -> subprocess.CompletedProcess:
    # the virtualenv's bin first, where `pip install -e ".[dev]"` put httpie; stdin is not a terminal
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", walkthrough(tool)],
        cwd=ROOT,
        env={**os.environ, "BASE": base, "PATH": path, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def server(tmp_path):
    url = f"sqlite://{tmp_path / 'readme.sqlite3'}"
    migrate(url)
    with live_server(url, tmp_path) as base:
        yield base


def test_curl_walkthrough(server):
    lines = run_walkthrough("curl", server).stdout.splitlines()
    registered = json.loads(lines[0])
    assert registered["user"]["username"] == "ann" and registered["refresh_token"]
    assert json.loads(lines[1])["email"] == "ann@example.com"  # GET /user/me
    assert json.loads(lines[2])["username"] == "ann_b"  # PATCH /user/me
    assert lines[3:5] == ["204", "204"]  # password change, logout
    assert json.loads(lines[5])["code"] == "invalid_token"  # the logged-out token
    assert lines[6] == "204"  # account deleted


def test_httpie_walkthrough(server):
    result = run_walkthrough("httpie", server)
    # httpie writes bodies alone, back to back, when its output is not a terminal; 204s write nothing
    decoder, out, bodies = json.JSONDecoder(), result.stdout.strip(), []
    while out:
        body, end = decoder.raw_decode(out)
        bodies.append(body)
        out = out[end:].lstrip()
    assert len(bodies) == 4, result.stdout
    registered, me, patched, refused = bodies
    assert registered["user"]["username"] == "bob" and registered["refresh_token"]
    assert me["email"] == "bob@example.com"  # GET /user/me
    assert patched["username"] == "bob_b"  # PATCH /user/me
    assert refused["code"] == "invalid_token"  # the logged-out token: 401, exit status 4
    assert "HTTP 401" in result.stderr, result.stderr  # --check-status said so
    # the account is gone: bob's new password no longer logs in
    r = httpx.post(
        f"{server}/user/login", json={"email": "bob@example.com", "password": "a new long passphrase"}
    )
    assert r.status_code == 401, r.text


def test_sessions_walkthrough(server):
    lines = run_walkthrough("sessions", server).stdout.splitlines()
    sessions = json.loads(lines[0])
    assert len(sessions) == 3, sessions  # registration's, the laptop's and the phone's
    assert [(s["user_agent"], s["current"]) for s in sessions[:2]] == [("phone", False), ("laptop", True)]
    assert lines[1:3] == ["204", "401"]  # the phone's session ended, its token refused
    types = [e["type"] for e in json.loads(lines[3])["results"]]
    assert types[:3] == ["session_revoked", "login", "login"] and types[-1] == "registered", types
    assert lines[4] == "204"  # logged out everywhere


@pytest.fixture
def console_mail_server(tmp_path):
    """As `make run` serves: the console mail backend, its sender on, mails on standard output."""
    url = f"sqlite://{tmp_path / 'readme-mail.sqlite3'}"
    migrate(url)
    with live_server(url, tmp_path, env={"EMAIL_BACKEND": "console", "MAIL_SENDER": "true"}) as base:
        yield base


def test_mail_walkthrough(console_mail_server, tmp_path):
    port = console_mail_server.rsplit(":", 1)[1]
    server_log = tmp_path / f"server-{port}.log"  # where live_server sends the server's output
    lines = run_walkthrough("mail", console_mail_server, SERVER_LOG=str(server_log)).stdout.splitlines()
    verified = json.loads(lines[0])
    assert verified["username"] == "cat" and verified["email_verified"] is True
    assert json.loads(lines[1])["detail"]  # 202 to the email change
    changed = json.loads(lines[2])
    assert (changed["email"], changed["email_verified"]) == ("cat@example.org", True)
    assert json.loads(lines[3])["detail"]  # 202 to the reset request
    assert lines[4:] == ["204", "401", "200"]  # reset, the old session refused, the new password logs in
    log = server_log.read_text()
    assert log.count("Subject: Confirm your email address") == 1 and "Subject: Reset your password" in log


def test_mfa_walkthrough(server):
    lines = run_walkthrough("mfa", server).stdout.splitlines()
    assert lines[0].startswith("otpauth://totp/") and "secret=" in lines[0]
    assert len(lines[1]) == 11 and lines[1][5] == "-"  # a recovery code, xxxxx-xxxxx
    assert "totp" in lines[2] and "recovery_code" in lines[2]  # the methods
    assert lines[3:5] == ["Bearer", "Bearer"]  # a TOTP code, then a recovery code, finished a login
    assert lines[5] == "204"  # turned off
