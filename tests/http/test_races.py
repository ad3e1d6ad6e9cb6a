"""Races: concurrent requests that must not both win. Meaningful on PostgreSQL (a real connection pool,
row locks); they run on SQLite too, where writes are serialised."""

import asyncio

import pytest

from apps.user import accounts, passwords
from apps.user.models import RefreshToken, Session, User
from tests.helpers import PASSWORD, assert_problem, bearer, register, unique

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


# --- a login racing a change of the account --------------------------------------------------------
# The change is made by another request while the login's password check is on the hashing thread:
# the interleaving that let a session outlive a password change, a deactivation or a deletion.


@pytest.fixture
def during_password_check(monkeypatch):
    """Run `action` right after the next password check of `password`, before the login goes on."""
    real_verify = passwords.verify_password
    pending: dict[str, object] = {}

    async def verify(password, stored, *args, **kwargs):
        result = await real_verify(password, stored, *args, **kwargs)
        action = pending.pop(password, None)
        if action is not None:
            await action()
        return result

    monkeypatch.setattr(passwords, "verify_password", verify)

    def arm(password: str, action) -> None:
        pending[password] = action

    return arm


async def live_sessions(user_id: int) -> int:
    return await Session.filter(user_id=user_id, revoked_at=None).count()


async def test_a_login_racing_a_password_change_leaves_no_live_session(client, during_password_check):
    reg = await register(client, password="Racing-Password-1")
    owner = bearer(reg["access_token"])

    async def change_password():
        r = await client.post(
            "/user/me/password",
            json={"current_password": "Racing-Password-1", "new_password": "Changed-Password-2"},
            headers=owner,
        )
        assert r.status_code == 204, r.text

    during_password_check("Racing-Password-1", change_password)
    # The thief's login checked the old password before the change committed: refused.
    r = await client.post(
        "/user/login", json={"email": reg["user"]["email"], "password": "Racing-Password-1"}
    )
    assert_problem(r, 401, "invalid_credentials")
    assert await live_sessions(reg["user"]["id"]) == 1  # the owner's own, kept by the change


async def test_a_login_racing_deactivation_stays_dead_after_reactivation(client, during_password_check):
    reg = await register(client, password="Racing-Password-3")
    user = await User.get(id=reg["user"]["id"])

    async def deactivate():
        await accounts.set_flags(None, user, client=None, is_active=False)

    during_password_check("Racing-Password-3", deactivate)
    r = await client.post(
        "/user/login", json={"email": reg["user"]["email"], "password": "Racing-Password-3"}
    )
    assert_problem(r, 401, "invalid_credentials")
    await accounts.set_flags(None, await User.get(id=user.id), client=None, is_active=True)
    assert await live_sessions(user.id) == 0  # nothing came back with the account


async def test_a_login_racing_deletion_is_401_not_500(client, during_password_check):
    reg = await register(client, password="Racing-Password-4")

    async def delete():
        r = await client.request(
            "DELETE", "/user/me", json={"password": "Racing-Password-4"}, headers=bearer(reg["access_token"])
        )
        assert r.status_code == 204, r.text

    during_password_check("Racing-Password-4", delete)
    r = await client.post(
        "/user/login", json={"email": reg["user"]["email"], "password": "Racing-Password-4"}
    )
    assert_problem(r, 401, "invalid_credentials")
    assert not await Session.exists(user_id=reg["user"]["id"])


async def test_logins_and_a_password_change_in_parallel_leave_only_the_kept_session(client):
    """Real concurrency (a connection pool on PostgreSQL): whatever the interleaving, no session
    opened with the old password is live once the change has answered."""
    reg = await register(client, password="Racing-Password-5")
    email = reg["user"]["email"]
    logins = [
        client.post("/user/login", json={"email": email, "password": "Racing-Password-5"}) for _ in range(N)
    ]
    change = client.post(
        "/user/me/password",
        json={"current_password": "Racing-Password-5", "new_password": "Changed-Password-6"},
        headers=bearer(reg["access_token"]),
    )
    *login_responses, change_response = await asyncio.gather(*logins, change)
    assert change_response.status_code == 204, change_response.text
    # one check per account at a time (the others 503 at once), so one login races the change
    statuses = [r.status_code for r in login_responses]
    assert set(statuses) <= {200, 401, 503} and {200, 401} & set(statuses), statuses
    live = await Session.filter(user_id=reg["user"]["id"], revoked_at=None).values_list("id", flat=True)
    assert [str(s) for s in live] == [jwt_sid(reg["access_token"])]


def jwt_sid(access_token: str) -> str:
    import jwt

    return jwt.decode(access_token, options={"verify_signature": False})["sid"]
