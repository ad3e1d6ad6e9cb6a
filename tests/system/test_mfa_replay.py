"""A TOTP code is accepted once across server processes (issue 10): two uvicorn servers on one
PostgreSQL database. A code that finished a login through one is refused through the other, and one
code sent through both at once (four requests for new recovery codes) is accepted once: the step a
code matched is stored by one conditional UPDATE that the database serialises, not remembered by a
process. Not marked `system`: it needs PostgreSQL
(TEST_DATABASE_URL) and takes a few seconds.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pyotp
import pytest

from tests.helpers import PASSWORD, fresh_postgres_database, live_server, unique


@pytest.fixture
async def postgres(database_url):
    if database_url.startswith("sqlite"):
        pytest.skip("two processes on one database: the PostgreSQL run (SQLite has one host)")
    async with fresh_postgres_database(database_url, "mfareplay") as url:
        yield url


async def mfa_token(client: httpx.AsyncClient, email: str) -> str:
    r = await client.post("/user/login", json={"email": email, "password": PASSWORD})
    assert r.json().get("mfa_required") is True, r.text
    return r.json()["mfa_token"]


async def test_one_code_opens_one_session_across_two_processes(postgres, tmp_path):
    env = {"MAIL_SENDER": "false"}
    with live_server(postgres, tmp_path, env=env) as a, live_server(postgres, tmp_path, env=env) as b:
        async with httpx.AsyncClient(base_url=a) as first, httpx.AsyncClient(base_url=b) as second:
            email = f"{unique()}@example.com"
            r = await first.post(
                "/user/register", json={"username": email.split("@")[0], "email": email, "password": PASSWORD}
            )
            headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
            r = await first.post("/user/mfa/totp/setup", json={"password": PASSWORD}, headers=headers)
            totp = pyotp.TOTP(r.json()["secret"])
            now = int(time.time() // 30)
            r = await first.post(
                "/user/mfa/totp/confirm", json={"code": totp.at((now - 1) * 30)}, headers=headers
            )
            assert r.status_code == 200, r.text
            # Login: a code accepted through one process is refused through the other. (Two logins of
            # one account racing cannot both win anyway: the first spends every mfa_token.)
            code = totp.at(now * 30)
            r = await first.post(
                "/user/login/mfa", json={"mfa_token": await mfa_token(first, email), "code": code}
            )
            assert r.status_code == 200, r.text
            again = await second.post(
                "/user/login/mfa", json={"mfa_token": await mfa_token(second, email), "code": code}
            )
            assert again.status_code == 401 and again.json()["code"] == "invalid_code", again.text
            # The same code sent through both processes at once (new recovery codes need one): one wins.
            code = totp.at((now + 1) * 30)
            answers = await asyncio.gather(
                *(
                    server.post(
                        "/user/mfa/recovery-codes", json={"password": PASSWORD, "code": code}, headers=headers
                    )
                    for server in (first, second, first, second)
                )
            )
            assert sorted(r.status_code for r in answers) == [200, 401, 401, 401], [r.text for r in answers]
