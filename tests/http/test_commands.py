"""Issue 4, point 1: manage.py with Django's command names, flags, prompts and exit codes."""

import os
import re
import socket
import subprocess
import sys
import time

import httpx
import pexpect
import pytest

from apps.user.models import Session, User
from tests.helpers import PASSWORD, ROOT, assert_problem, bearer, register, unique

COMMANDS = [
    "runserver",
    "migrate",
    "makemigrations",
    "showmigrations",
    "createsuperuser",
    "changepassword",
    "reset_mfa",
    "shell",
    "clearsessions",
    "check",
    "import_django_users",
]


def manage(*args, database_url=None, env=None, input=None, timeout=120):
    full_env = {**os.environ, **(env or {})}
    if database_url:
        full_env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
    )


def spawn(*args, database_url):
    env = {**os.environ, "DATABASE_URL": database_url}
    return pexpect.spawn(
        sys.executable, ["manage.py", *args], cwd=str(ROOT), env=env, encoding="utf-8", timeout=60
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = manage(command, "--help")
    assert result.returncode == 0 and "usage: manage.py " + command in result.stdout


def test_unknown_command_fails_clearly():
    result = manage("frobnicate")
    assert result.returncode == 2 and "invalid choice: 'frobnicate'" in result.stderr


async def test_createsuperuser_noinput_reads_djangos_variables(client, database_url):
    name = unique("admin")
    env = {
        "DJANGO_SUPERUSER_USERNAME": name,
        "DJANGO_SUPERUSER_EMAIL": f"{name}@example.com",
        "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
    }
    result = manage("createsuperuser", "--noinput", database_url=database_url, env=env)
    assert result.returncode == 0, result.stderr
    assert "Superuser created successfully." in result.stdout
    user = await User.get(username=name)
    assert user.is_staff and user.is_superuser and user.password.startswith("$argon2id$")
    # that user can use the staff API
    pair = (await client.post("/user/login", json={"username": name, "password": PASSWORD})).json()
    assert (await client.get("/admin/users", headers=bearer(pair["access_token"]))).status_code == 200
    # and a plain user cannot
    plain = await register(client)
    assert_problem(await client.get("/admin/users", headers=bearer(plain["access_token"])), 403)
    # again: the username is taken, a clear error and exit code 1
    again = manage("createsuperuser", "--noinput", database_url=database_url, env=env)
    assert again.returncode == 1 and "already taken" in again.stderr


def test_createsuperuser_noinput_errors(database_url):
    result = manage(
        "createsuperuser",
        "--noinput",
        database_url=database_url,
        env={"DJANGO_SUPERUSER_USERNAME": "", "DJANGO_SUPERUSER_EMAIL": ""},
    )
    assert result.returncode == 1 and "CommandError: You must use --username with --noinput" in result.stderr
    result = manage(
        "createsuperuser",
        "--noinput",
        "--username",
        unique(),
        "--email",
        "not-an-email",
        database_url=database_url,
    )
    assert result.returncode == 1 and "email" in result.stderr.lower()
    result = manage(
        "createsuperuser",
        "--noinput",
        "--username",
        unique(),
        "--email",
        f"{unique()}@example.com",
        database_url=database_url,
        env={"DJANGO_SUPERUSER_PASSWORD": "short"},
    )
    assert result.returncode == 1 and "at least 8 characters" in result.stderr


async def test_createsuperuser_interactive_through_a_terminal(client, database_url):
    taken = await register(client)
    name = unique("root")
    child = spawn("createsuperuser", database_url=database_url)
    child.expect("Username: ")
    child.sendline(taken["user"]["username"].upper())  # taken, case-insensitively
    child.expect("Error: That username is already taken.")
    child.expect("Username: ")
    child.sendline(name)
    child.expect("Email address: ")
    child.sendline("nope")
    child.expect("Error: ")
    child.expect("Email address: ")
    child.sendline(f"{name}@Example.com")
    child.expect("Password: ")
    child.sendline("short")
    child.expect(r"Password \(again\): ")
    child.sendline("short")
    child.expect("Error: Use at least 8 characters.")
    child.expect("Password: ")
    child.sendline(PASSWORD)
    child.expect(r"Password \(again\): ")
    child.sendline(PASSWORD + "x")
    child.expect("Error: Your passwords didn't match.")
    child.expect("Password: ")
    child.sendline(PASSWORD)
    child.expect(r"Password \(again\): ")
    child.sendline(PASSWORD)
    child.expect("Superuser created successfully.")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert PASSWORD not in child.before  # the password was never echoed
    pair = (
        await client.post("/user/login", json={"email": f"{name}@example.com", "password": PASSWORD})
    ).json()
    assert (await client.get("/admin/users", headers=bearer(pair["access_token"]))).status_code == 200


async def test_changepassword_sets_it_and_ends_sessions(client, database_url):
    reg = await register(client)
    child = spawn("changepassword", reg["user"]["username"], database_url=database_url)
    child.expect("Password: ")
    child.sendline("Brand-New-Passw0rd")
    child.expect(r"Password \(again\): ")
    child.sendline("Brand-New-Passw0rd")
    child.expect("Password changed successfully")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert_problem(await client.get("/user/me", headers=bearer(reg["access_token"])), 401, "invalid_token")
    ok = await client.post(
        "/user/login", json={"email": reg["user"]["email"], "password": "Brand-New-Passw0rd"}
    )
    assert ok.status_code == 200
    missing = manage("changepassword", "nobody-" + unique(), database_url=database_url)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


async def test_clearsessions_deletes_ended_and_expired(client, database_url):
    live = await register(client)
    ended = await register(client)
    await client.post("/user/logout", headers=bearer(ended["access_token"]))
    result = manage("clearsessions", database_url=database_url)
    assert result.returncode == 0 and "ended or expired session(s)" in result.stdout
    assert not await Session.filter(user_id=ended["user"]["id"]).exists()
    assert await Session.filter(user_id=live["user"]["id"]).exists()
    assert (await client.get("/user/me", headers=bearer(live["access_token"]))).status_code == 200


async def test_shell_runs_top_level_await(client, database_url):
    reg = await register(client)
    script = (
        f"n = await User.filter(username={reg['user']['username']!r}).count()\nprint('count', n)\n"
        # the project's clients (whose transactions give back what a failed BEGIN took), unbounded
        "from tortoise import connections\n"
        "c = connections.get('default')\n"
        "bounds = getattr(c, 'acquire_timeout', None), getattr(getattr(c, '_lock', None), '_timeout', None)\n"
        "print('client', type(c).__name__, *bounds)\n"
    )
    result = manage("shell", database_url=database_url, input=script)
    assert result.returncode == 0, result.stderr
    assert "count 1" in result.stdout
    assert re.search(r"client Bounded(Asyncpg|Sqlite)Client None None", result.stdout), result.stdout
    assert 'Use "await" directly' in result.stderr  # the banner


def test_runserver_serves(database_url):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/health").json() == {"status": "ok"}
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail("runserver did not answer")
    finally:
        proc.terminate()
        proc.wait(10)
    assert manage("runserver", "not-a-port").returncode == 1


GOOD_KEY = "Qx7-" + "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOP"


def deploy_check(**env):
    base = {
        "DEBUG": "false",
        "SECRET_KEY": GOOD_KEY,
        "ALLOWED_HOSTS": "auth.example.com",
        "CORS_ALLOWED_ORIGINS": "https://app.example.com",
        "DATABASE_URL": "postgres://u@db:5432/auth",
        "API_DOCS": "false",
        "EMAIL_BACKEND": "smtp",
        "EMAIL_HOST": "smtp.example.com",
        "FRONTEND_URL": "https://app.example.com",
    }
    clean = {"PATH": os.environ["PATH"], **base, **env}
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
    )


def test_check_deploy_passes_a_sound_configuration():
    result = deploy_check()
    assert result.returncode == 0 and "no issues" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("env", "issue", "exit_code"),
    [
        ({"DEBUG": "true"}, "security.E001", 1),
        ({"SECRET_KEY": "x" * 40}, "security.E002", 1),
        ({"SECRET_KEY": "change-me-to-a-long-random-string"}, "settings.E000", 1),
        ({"SECRET_KEY": "short"}, "settings.E000", 1),
        ({"ALLOWED_HOSTS": "*"}, "security.E003", 1),
        ({"CORS_ALLOWED_ORIGINS": "*"}, "settings.E000", 1),
        ({"DATABASE_URL": "sqlite:///tmp/prod.sqlite3"}, "database.W001", 0),
        ({"API_DOCS": "true"}, "security.W002", 0),
        ({"METRICS_ENABLED": "true", "METRICS_ALLOWED_IPS": "0.0.0.0/0,::/0"}, "security.E005", 1),
        ({"EMAIL_BACKEND": "console"}, "mail.W001", 0),
        ({"FRONTEND_URL": "http://app.example.com"}, "mail.W002", 0),
        ({"WEBAUTHN_ORIGINS": "http://app.example.com"}, "mfa.W001", 0),
    ],
)
def test_check_deploy_flags_each_insecure_setting(env, issue, exit_code):
    result = deploy_check(**env)
    assert issue in result.stdout, result.stdout + result.stderr
    assert result.returncode == exit_code


def test_check_fail_level_warning():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={
            "PATH": os.environ["PATH"],
            "DEBUG": "false",
            "SECRET_KEY": GOOD_KEY,
            "API_DOCS": "true",
            "DATABASE_URL": "postgres://u@db:5432/a",
        },
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "security.W002" in result.stdout


async def test_reset_mfa_removes_every_second_factor(client, database_url):
    import pyotp

    from apps.user.models import TOTPDevice

    reg = await register(client)
    headers = bearer(reg["access_token"])
    secret = (await client.post("/user/mfa/totp/setup", json={"password": PASSWORD}, headers=headers)).json()[
        "secret"
    ]
    r = await client.post("/user/mfa/totp/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=headers)
    assert r.status_code == 200, r.text
    result = manage("reset_mfa", reg["user"]["username"], database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert "Removed 1 second factor(s)" in result.stdout
    assert not await TOTPDevice.filter(user_id=reg["user"]["id"]).exists()
    r = await client.post("/user/login", json={"email": reg["user"]["email"], "password": reg["password"]})
    assert "access_token" in r.json()
    events = await client.get("/user/events", headers=bearer(reg["access_token"]))
    assert events.json()["results"][0]["type"] == "login"
    assert "mfa_disabled" in [e["type"] for e in events.json()["results"]]
    missing = manage("reset_mfa", "nobody-" + reg["user"]["username"], database_url=database_url)
    assert missing.returncode != 0 and "does not exist" in missing.stderr
