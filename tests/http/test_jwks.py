"""Issue 9, point 4: access tokens signed with a private key (EdDSA, ES256, RS256), their public keys
published at /.well-known/jwks.json so other services verify tokens offline, and kids on every token.

Settings are module attributes, so most tests swap keys by monkeypatching them; the settings loader
itself (PEM parsing and its refusals) runs in a fresh interpreter, as an operator's start-up does.
"""

import base64
import functools
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

import settings
from apps.user import keys
from tests.helpers import PASSWORD, ROOT, assert_problem, bearer, live_server, register, unique
from tests.http.test_settings import load_settings, refused

ALGORITHMS = ["EdDSA", "ES256", "RS256"]
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
# RFC 7638 section 3.2: the members a thumbprint covers, per key type
THUMBPRINT_MEMBERS = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}


@functools.cache
def private_key(algorithm: str, n: int = 0):
    """The n-th test key for an algorithm (made once: an RSA key takes a moment)."""
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return keys.generate_private_key(algorithm)


def pem(key) -> str:
    return keys.private_pem(key)


def public_pem(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def sign_with(monkeypatch, algorithm: str, key, fallbacks=()) -> None:
    """What settings.py would hold with JWT_ALGORITHM, JWT_PRIVATE_KEY and the fallbacks set."""
    monkeypatch.setattr(settings, "JWT_ALGORITHM", algorithm)
    monkeypatch.setattr(settings, "JWT_PRIVATE_KEY", key)
    monkeypatch.setattr(settings, "JWT_PRIVATE_KEY_FALLBACKS", list(fallbacks))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rfc7638(jwk: dict) -> str:
    members = {name: jwk[name] for name in THUMBPRINT_MEMBERS[jwk["kty"]]}
    return b64url(
        hashlib.sha256(json.dumps(members, sort_keys=True, separators=(",", ":")).encode()).digest()
    )


async def jwks_of(client) -> dict:
    r = await client.get("/.well-known/jwks.json")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "public, max-age=300"
    return r.json()


async def accepted(client, token: str) -> bool:
    r = await client.get("/user/me", headers=bearer(token))
    if r.status_code == 401:
        assert_problem(r, 401, "invalid_token")
    return r.status_code == 200


def resigned_hs256(token: str, secret: bytes) -> str:
    """The token with alg HS256 in its header (its kid kept) and an HMAC made with `secret`: what an
    attacker who knows only the public key makes (PyJWT itself refuses a PEM as an HMAC secret)."""
    head, payload, _ = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    signing_input = b64url(json.dumps({**header, "alg": "HS256"}).encode()) + "." + payload
    return signing_input + "." + b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


# --- the published keys --------------------------------------------------------------------------------


async def test_with_hmac_there_is_nothing_to_publish_404(client):
    assert settings.JWT_ALGORITHM == "HS256"
    r = await client.get("/.well-known/jwks.json")
    assert_problem(r, 404, "not_found")
    assert r.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_another_service_verifies_tokens_with_the_published_jwks(client, monkeypatch, algorithm):
    key = private_key(algorithm)
    sign_with(monkeypatch, algorithm, key)
    account = await register(client)
    token = account["access_token"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == algorithm and header["typ"] == "at+jwt"

    published = await jwks_of(client)
    (jwk,) = published["keys"]
    assert jwk["kid"] == header["kid"] == rfc7638(jwk)  # the kid is the key's RFC 7638 thumbprint
    assert jwk["alg"] == algorithm and jwk["use"] == "sig"
    verifier = jwt.PyJWKSet.from_dict(published)[header["kid"]]
    assert verifier.key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == public_pem(key)  # JWT_PRIVATE_KEY's public half, nothing else
    claims = jwt.decode(
        token,
        verifier.key,
        algorithms=[algorithm],
        audience=settings.JWT_AUDIENCE,
        issuer=settings.JWT_ISSUER,
    )
    assert claims["sub"] == str(account["user"]["id"]) and claims["token_type"] == "access"
    assert await accepted(client, token)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_the_jwks_publishes_public_members_only(client, monkeypatch, algorithm):
    sign_with(monkeypatch, algorithm, private_key(algorithm), [private_key(algorithm, 1)])
    for jwk in (await jwks_of(client))["keys"]:
        assert not PRIVATE_JWK_MEMBERS & set(jwk), jwk
        assert set(jwk) == {*THUMBPRINT_MEMBERS[jwk["kty"]], "kid", "alg", "use"}, jwk


def test_the_thumbprint_is_rfc_7638s():
    # RFC 7638 section 3.1's example key and thumbprint
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
        "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
        "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
        "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    assert (
        keys.thumbprint({"kty": "RSA", "n": n, "e": "AQAB"}) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_public_jwks_match_pyjwts(algorithm):
    """keys.py builds JWKs with cryptography alone; PyJWT, what verifiers use, writes the same members."""
    key = private_key(algorithm)
    pyjwt_jwk = jwt.get_algorithm_by_name(algorithm).to_jwk(key.public_key(), as_dict=True)
    ours = keys.public_jwk_members(key)
    assert ours == {name: pyjwt_jwk[name] for name in ours}


# --- rotation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_a_token_signed_with_a_fallback_key_works_until_the_fallback_is_removed(
    client, monkeypatch, algorithm
):
    old, new = private_key(algorithm), private_key(algorithm, 1)
    sign_with(monkeypatch, algorithm, old)
    account = await register(client)
    first = account["access_token"]
    login = {"email": account["user"]["email"], "password": account["password"]}
    second = (await client.post("/user/login", json=login)).json()["access_token"]

    sign_with(monkeypatch, algorithm, new, [old])  # the rotation: the old key becomes a fallback
    published = (await jwks_of(client))["keys"]
    assert [jwk["kid"] for jwk in published] == [rfc7638(jwk) for jwk in published]
    new_kid, old_kid = (jwk["kid"] for jwk in published)  # the signing key first
    assert jwt.get_unverified_header(first)["kid"] == old_kid != new_kid
    assert await accepted(client, first)
    fresh = (await client.post("/user/login", json=login)).json()["access_token"]
    assert jwt.get_unverified_header(fresh)["kid"] == new_kid

    sign_with(monkeypatch, algorithm, new)  # the old key dropped: its tokens are refused
    # (`second`, not `first`: a worker trusts a token it verified until it expires, and a real
    # rotation restarts the workers, which forgets them)
    assert not await accepted(client, second)
    assert [jwk["kid"] for jwk in (await jwks_of(client))["keys"]] == [new_kid]
    assert await accepted(client, fresh)


async def test_an_unknown_or_missing_kid_falls_back_to_trying_each_key(client, monkeypatch):
    old, new = private_key("EdDSA"), private_key("EdDSA", 1)
    sign_with(monkeypatch, "EdDSA", new, [old])
    claims = jwt.decode((await register(client))["access_token"], options={"verify_signature": False})

    def signed(key, **header) -> str:
        return jwt.encode(claims, key, algorithm="EdDSA", headers={"typ": "at+jwt", **header})

    assert await accepted(client, signed(old))  # no kid (a token from before kids)
    assert await accepted(client, signed(old, kid="no-such-kid"))
    # a kid that names one key while another signed: not a token this service issued
    assert not await accepted(client, signed(new, kid=keys.thumbprint(keys.public_jwk_members(old))))


async def test_hmac_tokens_carry_a_kid_that_tells_nothing_of_the_secret(client, monkeypatch):
    kid = jwt.get_unverified_header((await register(client))["access_token"])["kid"]
    expected = hmac.new(settings.SECRET_KEY.encode(), b"authservice kid", hashlib.sha256).digest()[:12]
    assert kid == b64url(expected) == keys.hmac_kid(settings.SECRET_KEY)
    assert kid not in settings.SECRET_KEY and keys.hmac_kid("another-" + "k" * 40) != kid
    # SECRET_KEY rotation picks the fallback by its kid, as before kids it tried each key
    old_token = (await register(client))["access_token"]
    monkeypatch.setattr(settings, "SECRET_KEY_FALLBACKS", [settings.SECRET_KEY])
    monkeypatch.setattr(settings, "SECRET_KEY", "rotated-" + "k" * 40)
    assert await accepted(client, old_token)


# --- algorithm confusion --------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_a_token_re_signed_with_hs256_using_the_public_key_is_refused(client, monkeypatch, algorithm):
    key = private_key(algorithm)
    sign_with(monkeypatch, algorithm, key)
    token = (await register(client))["access_token"]
    assert await accepted(client, token)  # the control: the genuine token opens /user/me
    published = (await jwks_of(client))["keys"][0]
    secrets = [public_pem(key), json.dumps(published).encode(), *(v.encode() for v in published.values())]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        secrets.append(
            key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
    if isinstance(key, ec.EllipticCurvePrivateKey):
        secrets.append(
            key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )
    for secret in secrets:
        assert not await accepted(client, resigned_hs256(token, secret)), secret


# --- the settings loader (a fresh interpreter, as at start-up) ---------------------------------------------


def load_keys(**env: str) -> subprocess.CompletedProcess:
    """Import settings with these variables; print the algorithm and the number of keys it loaded."""
    clean = {"PATH": os.environ["PATH"], "DEBUG": "false", "SECRET_KEY": "k" * 40, **env}
    code = (
        "import settings; from apps.user import keys; ring = keys.key_ring(); "
        "print(settings.JWT_ALGORITHM, len(ring.verification_keys), ring.jwks is not None)"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True)


def escaped(text: str) -> str:
    """A PEM on one line with literal \\n, as in a .env file."""
    return text.replace("\n", "\\n")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_private_key_loads_as_a_pem_with_newlines_or_escapes_or_from_a_file(algorithm, tmp_path):
    text = pem(private_key(algorithm))
    path = tmp_path / "jwt.pem"
    path.write_text(text)
    for value in (text, escaped(text), str(path)):
        result = load_keys(JWT_ALGORITHM=algorithm, JWT_PRIVATE_KEY=value)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [algorithm, "1", "True"]


DOTENV_SPELLINGS = {
    "one line with \\n escapes": lambda text: escaped(text),  # what generate_jwt_key prints
    "one double-quoted line": lambda text: f'"{escaped(text)}"',  # python-dotenv expands the escapes
    "double-quoted over several lines": lambda text: f'"{text}"',
}


@pytest.mark.parametrize("spelling", DOTENV_SPELLINGS)
def test_a_private_key_in_dotenv(spelling, tmp_path):
    # settings.py reads .env next to itself: a copy of it in a scratch dir, with its own .env
    key = private_key("EdDSA")
    (tmp_path / "settings.py").write_text((ROOT / "settings.py").read_text())
    value = DOTENV_SPELLINGS[spelling](pem(key).strip())
    (tmp_path / ".env").write_text(f"SECRET_KEY={'k' * 40}\nJWT_ALGORITHM=EdDSA\nJWT_PRIVATE_KEY={value}\n")
    code = "from apps.user import keys; print(keys.key_ring().kid)"
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == keys.thumbprint(keys.public_jwk_members(key))


def test_fallbacks_load_as_concatenated_pems_or_paths(tmp_path):
    current, older, oldest = (pem(private_key("EdDSA", n)) for n in (0, 1, 2))
    paths = []
    for name, text in (("older.pem", older), ("oldest.pem", oldest)):
        paths.append(tmp_path / name)
        paths[-1].write_text(text)
    for fallbacks in (
        older + oldest,
        escaped(older + oldest),
        f"{paths[0]}, {paths[1]}",
        older + "," + oldest,
    ):
        result = load_keys(
            JWT_ALGORITHM="EdDSA", JWT_PRIVATE_KEY=current, JWT_PRIVATE_KEY_FALLBACKS=fallbacks
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["EdDSA", "3", "True"]


def _bad_keys():
    ed, es, rs = (pem(private_key(a)) for a in ALGORITHMS)
    p384 = pem(ec.generate_private_key(ec.SECP384R1()))
    small_rsa = pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))  # noqa: S505 (the refused size)
    encrypted = private_key("EdDSA").private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    garbage = "-----BEGIN PRIVATE KEY-----\nTm90IGEga2V5IGF0IGFsbCwgc29ycnk=\n-----END PRIVATE KEY-----\n"
    return [
        ("no key", {"JWT_ALGORITHM": "EdDSA"}, "JWT_PRIVATE_KEY"),
        ("an RSA key for EdDSA", {"JWT_ALGORITHM": "EdDSA", "JWT_PRIVATE_KEY": rs}, "JWT_PRIVATE_KEY"),
        ("an Ed25519 key for ES256", {"JWT_ALGORITHM": "ES256", "JWT_PRIVATE_KEY": ed}, "JWT_PRIVATE_KEY"),
        ("a P-384 key for ES256", {"JWT_ALGORITHM": "ES256", "JWT_PRIVATE_KEY": p384}, "JWT_PRIVATE_KEY"),
        ("a P-256 key for RS256", {"JWT_ALGORITHM": "RS256", "JWT_PRIVATE_KEY": es}, "JWT_PRIVATE_KEY"),
        ("a 1024-bit RSA key", {"JWT_ALGORITHM": "RS256", "JWT_PRIVATE_KEY": small_rsa}, "JWT_PRIVATE_KEY"),
        (
            "a public key",
            {"JWT_ALGORITHM": "EdDSA", "JWT_PRIVATE_KEY": public_pem(private_key("EdDSA")).decode()},
            "JWT_PRIVATE_KEY",
        ),
        (
            "an encrypted key",
            {"JWT_ALGORITHM": "EdDSA", "JWT_PRIVATE_KEY": encrypted.decode()},
            "JWT_PRIVATE_KEY",
        ),
        ("not a key", {"JWT_ALGORITHM": "EdDSA", "JWT_PRIVATE_KEY": garbage}, "JWT_PRIVATE_KEY"),
        ("two keys", {"JWT_ALGORITHM": "EdDSA", "JWT_PRIVATE_KEY": ed + ed}, "JWT_PRIVATE_KEY"),
        (
            "a missing file",
            {"JWT_ALGORITHM": "EdDSA", "JWT_PRIVATE_KEY": "/nonexistent/jwt.pem"},
            "JWT_PRIVATE_KEY",
        ),
        ("a key with HS256", {"JWT_ALGORITHM": "HS256", "JWT_PRIVATE_KEY": ed}, "JWT_PRIVATE_KEY"),
        (
            "fallbacks with HS256",
            {"JWT_ALGORITHM": "HS256", "JWT_PRIVATE_KEY_FALLBACKS": ed},
            "JWT_PRIVATE_KEY_FALLBACKS",
        ),
        (
            "a fallback of another kind",
            {"JWT_ALGORITHM": "EdDSA", "JWT_PRIVATE_KEY": ed, "JWT_PRIVATE_KEY_FALLBACKS": ed + rs},
            "JWT_PRIVATE_KEY_FALLBACKS",
        ),
        (
            "text between fallbacks",
            {
                "JWT_ALGORITHM": "EdDSA",
                "JWT_PRIVATE_KEY": ed,
                "JWT_PRIVATE_KEY_FALLBACKS": ed + "oops\n" + ed,
            },
            "JWT_PRIVATE_KEY_FALLBACKS",
        ),
        ("an unknown algorithm", {"JWT_ALGORITHM": "PS256"}, "JWT_ALGORITHM"),
    ]


BAD_KEYS = _bad_keys()


@pytest.mark.parametrize(("case", "env", "setting"), BAD_KEYS, ids=[case for case, _, _ in BAD_KEYS])
def test_a_bad_key_stops_the_service_naming_the_setting_and_never_showing_the_key(case, env, setting):
    result = load_settings(**env)
    assert refused(result, setting), result.stderr
    for name in ("JWT_PRIVATE_KEY", "JWT_PRIVATE_KEY_FALLBACKS"):
        for line in env.get(name, "").splitlines():
            if line and not line.startswith("-----"):  # the base64 body of any PEM given
                assert line not in result.stderr, f"{case}: the error shows key material"


# --- manage.py generate_jwt_key ---------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_generate_jwt_key_prints_a_key_and_an_env_line_that_the_service_accepts(algorithm):
    out = subprocess.run(
        [sys.executable, "manage.py", "generate_jwt_key", "--algorithm", algorithm],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    block = re.search(r"-----BEGIN PRIVATE KEY-----\n.*?-----END PRIVATE KEY-----\n", out, re.S).group(0)
    printed = serialization.load_pem_private_key(block.encode(), password=None)
    assert keys.public_jwk_members(printed)  # a key of a kind keys.py publishes
    env = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("JWT_"))
    assert env["JWT_ALGORITHM"] == algorithm and "\n" not in env["JWT_PRIVATE_KEY"]  # one .env line
    result = load_keys(**env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [algorithm, "1", "True"]
    assert "JWT_PRIVATE_KEY_FALLBACKS" in out  # how to rotate


# --- a live server, configured from the environment, and the README's verifier -----------------------------


def readme_verifier(jwks_url: str):
    """The README's offline verifier (section "Verifying tokens in another service"), run as written
    but for the URL."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- snippet:verify-offline -->\s*```python\n(.*?)```", readme, re.S)
    assert match, "the verify-offline snippet is missing from README.md"
    code = match.group(1).replace("https://auth.example.com/.well-known/jwks.json", jwks_url)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 (our own README)
    return namespace["verify"]


def test_a_live_eddsa_server_serves_tokens_the_readme_verifier_accepts(database_url, tmp_path):
    key = private_key("EdDSA", 2)
    env = {"JWT_ALGORITHM": "EdDSA", "JWT_PRIVATE_KEY": escaped(pem(key))}
    with live_server(database_url, tmp_path, env=env) as base:
        with httpx.Client(base_url=base) as c:
            name = unique("v")
            r = c.post(
                "/user/register",
                json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
            )
            assert r.status_code == 201, r.text
            token = r.json()["access_token"]
            verify = readme_verifier(base + "/.well-known/jwks.json")
            claims = verify(token)
            assert claims["sub"] == str(r.json()["user"]["id"])
            with pytest.raises(jwt.InvalidTokenError):
                verify(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))
            # the JWKS is checked against the Host header like every other path
            assert c.get("/.well-known/jwks.json", headers={"Host": "evil.example"}).status_code == 400
