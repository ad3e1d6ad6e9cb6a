"""Issue 8, point 7: new passwords are not among the commonest, not close to the username or email,
and (PASSWORD_BREACH_CHECK) not in a known breach, checked through the k-anonymity range API, which
fails open when unreachable."""

import hashlib
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import settings
from apps.user.models import User
from tests.helpers import PASSWORD, assert_problem, bearer, register, unique


def field_errors(r) -> dict[str, str]:
    return {e["field"]: e["message"] for e in r.json()["errors"]}


async def register_with(client, password, username=None):
    username = username or unique()
    return await client.post(
        "/user/register",
        json={"username": username, "email": f"{username}@example.com", "password": password},
    )


@pytest.mark.parametrize("password", ["password1", "Sunshine1", "QWERTYUIOP", "iloveyou2"])
async def test_a_common_password_is_refused_at_registration_and_nothing_is_created(client, password):
    name = unique()
    r = await register_with(client, password, username=name)
    assert_problem(r, 422, "validation_error")
    assert "too common" in field_errors(r)["password"]
    assert not await User.exists(username_key=name)


@pytest.mark.parametrize("password", ["{name}2024", "{name}!!", "x{name}x"])
async def test_a_password_close_to_the_username_or_email_is_refused(client, password):
    name = "margaretta" + unique()[-4:]
    r = await register_with(client, password.format(name=name), username=name)
    assert_problem(r, 422)
    assert "too similar to your username" in field_errors(r)["password"]


async def test_a_new_password_is_checked_as_well(client):
    reg = await register(client)
    r = await client.post(
        "/user/me/password",
        json={"current_password": PASSWORD, "new_password": "iloveyou2"},
        headers=bearer(reg["access_token"]),
    )
    assert_problem(r, 422)
    assert "too common" in field_errors(r)["new_password"]


class RangeAPI(BaseHTTPRequestHandler):
    """Have I Been Pwned's range API as it answers (suffix:count lines, padding lines with count 0),
    knowing one breached password: "Tr0ub4dor&3-breached"."""

    breached = hashlib.sha1(b"Tr0ub4dor&3-breached").hexdigest().upper()  # noqa: S324 (the API's scheme)
    asked: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        prefix = self.path.rsplit("/", 1)[-1]
        RangeAPI.asked.append(prefix)
        lines = ["0000000000000000000000000000000000A:0"]
        if prefix == self.breached[:5]:
            lines.append(f"{self.breached[5:]}:3861493")
        body = "\r\n".join(lines).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def range_api(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), RangeAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(settings, "PASSWORD_BREACH_CHECK", True)
    monkeypatch.setattr(settings, "PASSWORD_BREACH_API", f"http://127.0.0.1:{server.server_port}/range/")
    RangeAPI.asked.clear()
    yield RangeAPI
    server.shutdown()


async def test_a_breached_password_is_refused_and_only_a_prefix_leaves(client, range_api):
    r = await register_with(client, "Tr0ub4dor&3-breached")
    assert_problem(r, 422)
    assert "data breach" in field_errors(r)["password"]
    assert range_api.asked == [range_api.breached[:5]]  # five hex digits, never the password or the hash
    assert (await register_with(client, "An-unbreached-Passw0rd")).status_code == 201


async def test_an_unreachable_breach_api_accepts_the_password_and_says_so(client, monkeypatch, caplog):
    monkeypatch.setattr(settings, "PASSWORD_BREACH_CHECK", True)
    monkeypatch.setattr(settings, "PASSWORD_BREACH_API", "http://127.0.0.1:9/range/")  # nothing listens
    with caplog.at_level(logging.WARNING, logger="apps.user.password_policy"):
        r = await register_with(client, "Tr0ub4dor&3-breached")
    assert r.status_code == 201, r.text
    assert "password breach check unavailable" in caplog.text and "Tr0ub4dor" not in caplog.text


async def test_the_breach_check_is_off_by_default(client, range_api, monkeypatch):
    monkeypatch.setattr(settings, "PASSWORD_BREACH_CHECK", False)
    assert (await register_with(client, "Tr0ub4dor&3-breached")).status_code == 201
    assert range_api.asked == []


async def test_manage_py_keeps_the_policy_too(client, database_url):
    from tests.http.test_commands import manage

    name = unique()
    result = manage(
        "createsuperuser",
        "--noinput",
        database_url=database_url,
        env={
            "DJANGO_SUPERUSER_USERNAME": name,
            "DJANGO_SUPERUSER_EMAIL": f"{name}@example.com",
            "DJANGO_SUPERUSER_PASSWORD": "password1",
        },
    )
    assert result.returncode == 1 and "too common" in result.stderr, result.stdout + result.stderr
    assert not await User.exists(username_key=name)
