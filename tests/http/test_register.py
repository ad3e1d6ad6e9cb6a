"""Points 1 and 2: registration, normalisation, case-insensitive uniqueness enforced by the database."""

import pytest
from tortoise.exceptions import IntegrityError

from apps.user.models import User, username_key
from tests.helpers import PASSWORD, assert_problem, register, unique


async def test_register_returns_token_pair_and_user(client):
    name = unique()
    r = await client.post(
        "/user/register", json={"username": name, "email": f"{name}@Example.COM", "password": PASSWORD}
    )
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "user"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    user = body["user"]
    assert set(user) == {
        "id",
        "username",
        "email",
        "is_active",
        "is_staff",
        "email_verified",
        "pending_email",
        "has_usable_password",
        "date_joined",
        "last_login",
    }
    assert user["email"] == f"{name}@example.com" and user["email_verified"] is False
    assert user["pending_email"] is None and user["has_usable_password"] is True
    assert user["is_active"] is True and user["is_staff"] is False
    assert user["date_joined"].endswith("Z") and user["last_login"] == user["date_joined"]


async def test_password_is_stored_hashed_never_returned(client):
    reg = await register(client)
    stored = await User.get(id=reg["user"]["id"])
    assert stored.password.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in stored.password


async def test_username_is_nfkc_normalised_and_email_trimmed_and_lowercased(client):
    suffix = unique("")
    # fullwidth letters collapse to ASCII under NFKC
    r = await client.post(
        "/user/register",
        json={"username": f"ＡＮＮ{suffix}", "email": f"  Ann.{suffix}@Example.Com ", "password": PASSWORD},
    )
    assert r.status_code == 201, r.text
    assert r.json()["user"]["username"] == f"ANN{suffix}"
    assert r.json()["user"]["email"] == f"ann.{suffix}@example.com"


@pytest.mark.parametrize("variant", [str.upper, str.title, lambda s: s.replace("ss", "ß")])
async def test_usernames_are_unique_case_insensitively(client, variant):
    name = f"ss{unique()}"
    await register(client, username=name)
    r = await client.post(
        "/user/register",
        json={"username": variant(name), "email": f"{unique()}@example.com", "password": PASSWORD},
    )
    body = assert_problem(r, 409, "conflict")
    assert body["errors"] == [{"field": "username", "message": "This username is already taken."}]


async def test_emails_are_unique_case_insensitively(client):
    reg = await register(client)
    r = await client.post(
        "/user/register",
        json={"username": unique(), "email": f"  {reg['user']['email'].upper()}", "password": PASSWORD},
    )
    body = assert_problem(r, 409)
    assert [e["field"] for e in body["errors"]] == ["email"]


async def test_unique_indexes_hold_without_the_service(app):
    """The database itself refuses twins: the guarantee does not depend on a look-up racing an insert."""
    name = unique()
    await User.create(
        username=name, username_key=username_key(name), email=f"{name}@example.com", password="x"
    )
    with pytest.raises(IntegrityError):
        await User.create(
            username=name.upper(),
            username_key=username_key(name.upper()),
            email="o@example.com",
            password="x",
        )
    with pytest.raises(IntegrityError):
        await User.create(
            username="other" + name, username_key="other" + name, email=f"{name}@example.com", password="x"
        )


@pytest.mark.parametrize("password", ["seven77", "x" * 129])
async def test_password_length_is_8_to_128(client, password):
    name = unique()
    r = await client.post(
        "/user/register", json={"username": name, "email": f"{name}@example.com", "password": password}
    )
    body = assert_problem(r, 422)
    assert [e["field"] for e in body["errors"]] == ["password"]


async def test_password_has_no_composition_rules(client):
    await register(client, password="aaaaaaaa")
    await register(client, password="x" * 128)


async def test_too_long_password_is_refused_before_hashing(client, monkeypatch):
    from apps.user import passwords

    async def must_not_hash(password):
        raise AssertionError("hashed a password that validation should have refused")

    monkeypatch.setattr(passwords, "hash_password", must_not_hash)
    name = unique()
    r = await client.post(
        "/user/register", json={"username": name, "email": f"{name}@example.com", "password": "p" * 10_000}
    )
    assert_problem(r, 422)


@pytest.mark.parametrize("username", ["", "has space", "semi;colon", "x" * 151])
async def test_username_follows_djangos_rules(client, username):
    r = await client.post(
        "/user/register",
        json={"username": username, "email": f"{unique()}@example.com", "password": PASSWORD},
    )
    assert [e["field"] for e in assert_problem(r, 422)["errors"]] == ["username"]


async def test_a_name_that_grows_under_case_folding_fits(client):
    # 150 characters, 300 once case-folded for the unique index (each ß becomes ss)
    name = "ß" * 140 + unique("")
    r = await client.post(
        "/user/register", json={"username": name, "email": f"{unique()}@example.com", "password": PASSWORD}
    )
    assert r.status_code == 201, r.text
    twin = await client.post(
        "/user/register",
        json={"username": name.replace("ß", "ẞ"), "email": f"{unique()}@example.com", "password": PASSWORD},
    )
    assert_problem(twin, 409)
