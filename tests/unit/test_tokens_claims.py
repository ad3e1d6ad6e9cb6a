"""Issue items 2 and 7: decode_access_token refuses every malformed claim or header with TokenError,
never another exception (a 500), and only takes a JWT typed at+jwt (RFC 9068)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest

import settings
from apps.user import tokens


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def claims(**changes) -> dict:
    now = int(time.time())
    base = {
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        "sub": "1",
        "sid": str(uuid.uuid4()),
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 600,
        "token_type": "access",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not REMOVE}


REMOVE = object()


def sign(header: dict, payload: dict | bytes) -> str:
    """A token signed with SECRET_KEY whatever its JSON holds (jwt.encode refuses some of it)."""
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = b64(json.dumps(header).encode()) + b"." + b64(raw)
    signature = hmac.new(settings.SECRET_KEY.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(signature)).decode()


AT_JWT = {"alg": "HS256", "typ": "at+jwt"}


def test_a_well_formed_token_decodes():
    token = sign(AT_JWT, claims(sub="42"))
    assert tokens.decode_access_token(token).user_id == 42
    assert tokens.decode_access_token(tokens.issue_access_token(7, str(uuid.uuid4()))).user_id == 7


BAD_TIMES = [
    "123",  # a numeric string: PyJWT would int() it
    "soon",
    True,  # a bool is an int to Python
    1.5,  # we issue integers only
    float("nan"),
    float("inf"),
    10**30,
    10**400,  # past any date or float
    -1,
    {"a": 1},
    [1],
    None,
]


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", BAD_TIMES, ids=lambda value: repr(value)[:40])
def test_a_time_claim_that_is_not_a_plain_integer_is_refused(claim, value):
    with pytest.raises(tokens.TokenError):
        tokens.decode_access_token(sign(AT_JWT, claims(**{claim: value})))


@pytest.mark.parametrize(
    "payload",
    [
        b'{"exp": ' + b"9" * 5000 + b"}",  # past Python's int digit limit
        b'{"exp": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b"[1]",
        b'{"a": "\xff"}',
        json.dumps(claims(sub="9" * 5000)).encode(),
        json.dumps(claims(sub="-1")).encode(),
        json.dumps(claims(sub=str(2**63))).encode(),  # no id column holds it
        json.dumps(claims(sid={"a": 1})).encode(),
        json.dumps(claims(jti={"a": 1})).encode(),
        json.dumps(claims(token_type=["access"])).encode(),
    ],
    ids=lambda p: p[:20].decode("latin-1"),
)
def test_a_hostile_payload_is_a_token_error(payload):
    with pytest.raises(tokens.TokenError):
        tokens.decode_access_token(sign(AT_JWT, payload))


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "HS256", "typ": "JWT"},
        {"alg": "HS256"},
        {"alg": "HS256", "typ": None},
        {"alg": "HS256", "typ": ["at+jwt"]},
        {"alg": "HS256", "typ": "at+jwt; x"},
        {"alg": "HS256", "typ": "application/jwt"},
    ],
    ids=lambda value: repr(value)[:40],
)
def test_only_an_at_jwt_header_type_is_accepted(header):
    with pytest.raises(tokens.TokenError, match="not an access token"):
        tokens.decode_access_token(sign(header, claims()))


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
def test_the_header_type_compares_case_insensitively_with_or_without_application(typ):
    assert tokens.decode_access_token(sign({"alg": "HS256", "typ": typ}, claims(sub="5"))).user_id == 5


@pytest.mark.parametrize("error", [TypeError("t"), ValueError("v"), OverflowError("o"), RecursionError("r")])
def test_errors_outside_pyjwt_become_token_errors_with_their_cause(monkeypatch, error):
    def explode(*args, **kwargs):
        raise error

    monkeypatch.setattr(jwt, "decode_complete", explode)
    with pytest.raises(tokens.TokenError) as caught:
        tokens.decode_access_token(tokens.issue_access_token(1, str(uuid.uuid4())))
    assert caught.value.__cause__ is error
