"""Point 4: access tokens are short-lived, pinned, bound, fully claimed and typed."""

import time
import uuid

import jwt
import pytest

import settings
from apps.user import keys, tokens
from tests.helpers import assert_problem, bearer, register


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def forge(
    token: str, *, key: str | None = None, algorithm: str = "HS256", drop: str | None = None, **changes
) -> str:
    claims = {**claims_of(token), **changes}
    if drop:
        del claims[drop]
    return jwt.encode(claims, key or settings.SECRET_KEY, algorithm=algorithm, headers={"typ": "at+jwt"})


async def refused(client, token: str) -> dict:
    r = await client.get("/user/me", headers=bearer(token))
    body = assert_problem(r, 401, "invalid_token")
    assert r.headers["www-authenticate"].startswith('Bearer realm="api", error="invalid_token"')
    return body


async def test_access_token_claims(client):
    reg = await register(client)
    header = jwt.get_unverified_header(reg["access_token"])
    # the kid names SECRET_KEY without telling anything about it (tests/http/test_jwks.py)
    assert header == {"alg": "HS256", "typ": "at+jwt", "kid": keys.hmac_kid(settings.SECRET_KEY)}
    claims = claims_of(reg["access_token"])
    assert set(claims) == {"iss", "aud", "sub", "sid", "jti", "iat", "exp", "token_type"}
    assert claims["exp"] - claims["iat"] == 900
    assert claims["iss"] == settings.JWT_ISSUER and claims["aud"] == settings.JWT_AUDIENCE
    assert claims["sub"] == str(reg["user"]["id"]) and claims["token_type"] == "access"
    uuid.UUID(claims["sid"])


async def test_unchanged_resigned_token_is_accepted(client):
    # the control for every forgery below: re-signing alone does not break a token
    reg = await register(client)
    assert (await client.get("/user/me", headers=bearer(forge(reg["access_token"])))).status_code == 200


async def test_expired_token_is_refused(client):
    reg = await register(client)
    now = int(time.time())
    body = await refused(client, forge(reg["access_token"], iat=now - 1000, exp=now - 100))
    assert body["detail"] == "The access token has expired."


@pytest.mark.parametrize("claim", tokens.REQUIRED_CLAIMS)
async def test_every_required_claim_is_required(client, claim):
    reg = await register(client)
    await refused(client, forge(reg["access_token"], drop=claim))


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "someone-else"},
        {"aud": "another-service"},
        {"token_type": "refresh"},
        {"sub": "abc"},
        {"sid": "not-a-uuid"},
        {"sid": str(uuid.uuid4())},
        {"sub": "999999999"},
    ],
)
async def test_wrong_claims_are_refused(client, changes):
    reg = await register(client)
    await refused(client, forge(reg["access_token"], **changes))


async def test_algorithm_is_pinned(client):
    reg = await register(client)
    await refused(client, forge(reg["access_token"], algorithm="HS512"))
    unsigned = jwt.encode(claims_of(reg["access_token"]), None, algorithm="none")
    await refused(client, unsigned)


async def test_wrong_key_and_tampering_are_refused(client):
    reg = await register(client)
    await refused(client, forge(reg["access_token"], key="another-secret-key-of-sufficient-length!"))
    head, payload, signature = reg["access_token"].split(".")
    await refused(client, f"{head}.{payload}.{signature[::-1]}")


async def test_refresh_token_never_authenticates(client):
    reg = await register(client)
    await refused(client, reg["refresh_token"])


async def test_access_token_is_not_a_refresh_token(client):
    reg = await register(client)
    r = await client.post("/user/refresh-token", json={"refresh_token": reg["access_token"]})
    assert_problem(r, 401, "invalid_refresh_token")


async def test_fallback_key_verifies_during_rotation(client, monkeypatch):
    reg = await register(client)
    old_key, new_key = settings.SECRET_KEY, "new-" + "k" * 40
    monkeypatch.setattr(settings, "SECRET_KEY", new_key)
    await refused(client, reg["access_token"])
    monkeypatch.setattr(settings, "SECRET_KEY_FALLBACKS", [old_key])
    assert (await client.get("/user/me", headers=bearer(reg["access_token"]))).status_code == 200


def test_issue_takes_now():
    from datetime import UTC, datetime

    token = tokens.issue_access_token(7, str(uuid.uuid4()), now=datetime(2030, 1, 1, tzinfo=UTC))
    assert claims_of(token)["iat"] == int(datetime(2030, 1, 1, tzinfo=UTC).timestamp())


def test_refresh_tokens_are_random_and_stored_as_digests():
    a, b = tokens.new_refresh_token(), tokens.new_refresh_token()
    assert a != b and len(a) >= 43
    assert tokens.refresh_token_digest(a) != a and len(tokens.refresh_token_digest(a)) == 64
