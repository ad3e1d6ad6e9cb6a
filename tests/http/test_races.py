"""Races: concurrent requests that must not both win. Meaningful on PostgreSQL (a real connection pool,
row locks); they run on SQLite too, where writes are serialised."""

import asyncio

from apps.user.models import RefreshToken, Session, User
from tests.helpers import PASSWORD, register, unique

N = 8


async def test_concurrent_registrations_of_one_email_create_one_account(client):
    email = f"{unique()}@example.com"
    responses = await asyncio.gather(
        *[
            client.post(
                "/user/register",
                json={"username": unique(), "email": email if i % 2 else email.upper(), "password": PASSWORD},
            )
            for i in range(N)
        ]
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (N - 1), [r.text for r in responses]
    assert await User.filter(email=email).count() == 1


async def test_concurrent_registrations_of_one_username_create_one_account(client):
    name = unique()
    responses = await asyncio.gather(
        *[
            client.post(
                "/user/register",
                json={
                    "username": name if i % 2 else name.upper(),
                    "email": f"{unique()}@example.com",
                    "password": PASSWORD,
                },
            )
            for i in range(N)
        ]
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * (N - 1)


async def test_concurrent_refreshes_with_one_token_let_at_most_one_win(client):
    reg = await register(client)
    responses = await asyncio.gather(
        *[client.post("/user/refresh-token", json={"refresh_token": reg["refresh_token"]}) for _ in range(N)]
    )
    winners = [r for r in responses if r.status_code == 200]
    assert len(winners) <= 1
    assert all(r.status_code == 401 for r in responses if r.status_code != 200)
    # one token was spent exactly once; the losers count as replays and end the session
    session = await Session.get(user_id=reg["user"]["id"])
    assert await RefreshToken.filter(session_id=session.id, used_at__isnull=False).count() == 1
    assert session.revoked_reason == "refresh_token_reused"
