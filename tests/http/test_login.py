"""Points 1 and 7: login by email or username; every failure looks the same."""

import pytest

from apps.user import passwords
from apps.user.models import User
from tests.helpers import PASSWORD, assert_problem, register, unique


async def test_login_by_email_any_case(client):
    reg = await register(client)
    r = await client.post("/user/login", json={"email": reg["user"]["email"].upper(), "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["id"] == reg["user"]["id"]


async def test_login_by_username_any_case(client):
    reg = await register(client)
    r = await client.post(
        "/user/login", json={"username": reg["user"]["username"].upper(), "password": PASSWORD}
    )
    assert r.status_code == 200, r.text


async def test_an_email_shaped_username_logs_in_through_the_email_field(client):
    """Django allows @ in usernames, and sites that used the address as the username keep it after
    the address changes: one "email or username" field (the SPA's) must find such an account."""
    old_address = f"{unique()}@old.example.com"
    reg = await register(client, username=old_address, email=f"{unique()}@example.com")
    r = await client.post("/user/login", json={"email": old_address.upper(), "password": PASSWORD})
    assert r.status_code == 200, r.text
    assert r.json()["user"]["id"] == reg["user"]["id"]
    r = await client.post("/user/login", json={"email": old_address, "password": "wrong-password"})
    assert_problem(r, 401, "invalid_credentials")


async def test_an_address_wins_over_a_username_spelled_like_it(client):
    """Ann's address is also Bob's username: the email field means Ann's account."""
    address = f"{unique()}@example.com"
    ann = await register(client, email=address)
    bob = await register(
        client, username=address, email=f"{unique()}@example.com", password="Bobs-own-Passw0rd"
    )
    r = await client.post("/user/login", json={"email": address, "password": PASSWORD})
    assert r.status_code == 200 and r.json()["user"]["id"] == ann["user"]["id"]
    r = await client.post("/user/login", json={"email": address, "password": "Bobs-own-Passw0rd"})
    assert_problem(r, 401, "invalid_credentials")

    r = await client.post("/user/login", json={"username": address, "password": "Bobs-own-Passw0rd"})
    assert r.status_code == 200 and r.json()["user"]["id"] == bob["user"]["id"]


async def test_an_address_that_found_a_username_leaves_no_failed_login_in_its_history(client):
    """Anybody may take a username that is somebody else's (old) address: that person's failed logins
    through the email field (their IP, their browser) must not land in the squatter's history."""
    from apps.user import events
    from apps.user.models import Event

    squatted = f"{unique()}@old.example.com"
    squatter = await register(client, username=squatted, email=f"{unique()}@example.com")
    r = await client.post("/user/login", json={"email": squatted, "password": "Typed-by-someone-else1"})
    assert_problem(r, 401, "invalid_credentials")
    r = await client.post("/user/login", json={"username": squatted, "password": "Wrong-by-the-owner1"})
    assert_problem(r, 401, "invalid_credentials")
    await events.drain()
    failed = await Event.filter(user_id=squatter["user"]["id"], type=events.LOGIN_FAILED).count()
    assert failed == 1  # the username login only


async def test_login_sets_last_login(client):
    reg = await register(client)
    r = await client.post("/user/login", json={"email": reg["user"]["email"], "password": PASSWORD})
    assert r.json()["user"]["last_login"] > reg["user"]["last_login"]
    stored = await User.get(id=reg["user"]["id"])
    assert stored.last_login.isoformat().replace("+00:00", "Z") == r.json()["user"]["last_login"]


async def test_each_login_opens_its_own_session(client):
    reg = await register(client)
    r = await client.post("/user/login", json={"email": reg["user"]["email"], "password": PASSWORD})
    assert r.json()["refresh_token"] != reg["refresh_token"]
    from apps.user.models import Session

    assert await Session.filter(user_id=reg["user"]["id"]).count() == 2


@pytest.mark.parametrize(
    "body", [{"password": PASSWORD}, {"email": "a@example.com", "username": "a", "password": PASSWORD}]
)
async def test_exactly_one_identifier(client, body):
    assert_problem(await client.post("/user/login", json=body), 422)


async def test_wrong_password_unknown_account_and_inactive_account_look_the_same(client):
    active = await register(client)
    inactive = await register(client)
    await User.filter(id=inactive["user"]["id"]).update(is_active=False)
    responses = [
        await client.post(
            "/user/login", json={"email": active["user"]["email"], "password": "Wrong-Password-1"}
        ),
        await client.post(
            "/user/login", json={"email": f"{unique()}@example.com", "password": "Wrong-Password-1"}
        ),
        await client.post("/user/login", json={"email": inactive["user"]["email"], "password": PASSWORD}),
        await client.post("/user/login", json={"username": unique(), "password": PASSWORD}),
    ]
    bodies = [assert_problem(r, 401, "invalid_credentials") for r in responses]
    assert all(b == bodies[0] for b in bodies)
    assert all(r.headers["www-authenticate"].startswith("Bearer") for r in responses)


async def test_unknown_account_costs_a_full_argon2id_verification(client, monkeypatch):
    """The timing defence: an unknown account runs the same argon2id verify as a wrong password."""
    verified_against = []
    real = passwords._verify_and_update

    def spy(password, stored):
        verified_against.append(stored)
        return real(password, stored)

    monkeypatch.setattr(passwords, "_verify_and_update", spy)
    reg = await register(client)
    await client.post("/user/login", json={"email": reg["user"]["email"], "password": "Wrong-Password-1"})
    await client.post(
        "/user/login", json={"email": f"{unique()}@example.com", "password": "Wrong-Password-1"}
    )
    assert len(verified_against) == 2
    wrong_password_hash, unknown_account_hash = verified_against
    prefix = "$argon2id$v=19$m=19456,t=2,p=1$"
    assert wrong_password_hash.startswith(prefix) and unknown_account_hash.startswith(prefix)


@pytest.mark.parametrize("identifier", [{"username": "u" * 4000}, {"email": "e" * 3000 + "@example.com"}])
async def test_overlong_identifiers_are_unknown_accounts(client, identifier):
    # found by schemathesis: Tortoise refused the over-long filter value with a 500
    r = await client.post("/user/login", json={**identifier, "password": "whatever-password"})
    assert_problem(r, 401, "invalid_credentials")
