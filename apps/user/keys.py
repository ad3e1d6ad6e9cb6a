"""The keys access tokens are signed and verified with, their key ids, and the published JWK Set.

Two kinds of JWT_ALGORITHM:

- HS256, HS384, HS512: an HMAC with SECRET_KEY (and SECRET_KEY_FALLBACKS). Only this service can
  check such a token; other services ask GET /user/verify. Nothing is published.
- EdDSA (Ed25519), ES256 (P-256) and RS256 (RSA, 2048 bits or more): a signature made with
  JWT_PRIVATE_KEY. The public halves of it and of JWT_PRIVATE_KEY_FALLBACKS are published at
  GET /.well-known/jwks.json, so other services verify tokens offline.

settings.py parses the PEM values once, at start-up, with `load_private_key` and
`load_fallback_keys`: a bad key stops the service with a message naming the setting and never
showing the key. `key_ring()` turns the parsed settings into what tokens.py signs and verifies with
and what the JWKS view publishes; it is rebuilt only when those settings change (tests override
them). This module uses `cryptography` directly and knows nothing of PyJWT (tokens.py owns that).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from apps.core.exceptions import ImproperlyConfigured

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
ASYMMETRIC_ALGORITHMS = ("EdDSA", "ES256", "RS256")
ALGORITHMS = HMAC_ALGORITHMS + ASYMMETRIC_ALGORITHMS
RSA_MIN_BITS = 2048  # NIST SP 800-131A; PyJWT warns below it too
RSA_NEW_BITS = 3072  # what generate_jwt_key makes: NIST SP 800-57 deems 2048 bits fine only until 2030

# What each asymmetric algorithm signs with, for the messages that refuse another kind of key.
KEY_KIND = {"EdDSA": "an Ed25519 key", "ES256": "a P-256 (secp256r1) EC key", "RS256": "an RSA key"}

PEM_BEGIN = "-----BEGIN"
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.S)
# What may separate PEM blocks in JWT_PRIVATE_KEY_FALLBACKS: blank space, and commas for those who
# list them like SECRET_KEY_FALLBACKS.
BETWEEN_BLOCKS = re.compile(r"[\s,]*")

# The HMAC kid is an HMAC of this label under the secret: it tells keys apart and reveals nothing of
# the secret a token's own signature does not already (both are outputs of HMAC under it).
HMAC_KID_LABEL = b"authservice kid"
HMAC_KID_BYTES = 12  # 96 bits: no two secrets share a kid by chance

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


# --- parsing the settings (at start-up) --------------------------------------------------------------


def _key_text(setting: str, value: str) -> str:
    """The PEM text of a setting's value: the value itself (with literal \\n escapes, as a one-line
    .env entry has them, turned into newlines), or the content of the file it names."""
    if value.startswith(PEM_BEGIN):
        return value.replace("\\r\\n", "\n").replace("\\n", "\n")
    path = Path(value).expanduser()
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        # The value is not echoed: what does not start with -----BEGIN may still be key material
        # pasted without its armour.
        raise ImproperlyConfigured(
            f"{setting} does not start with -----BEGIN, so it is read as the path of a PEM file, and "
            f"that file cannot be read ({type(exc).__name__}); give the PEM itself or a readable path"
        ) from None


def _pem_blocks(setting: str, text: str) -> list[str]:
    blocks = [m.group(0) for m in PEM_BLOCK.finditer(text)]
    if not blocks or any(not BETWEEN_BLOCKS.fullmatch(part) for part in PEM_BLOCK.split(text)[::2]):
        raise ImproperlyConfigured(
            f"{setting} is not PEM: expected -----BEGIN PRIVATE KEY----- ... -----END PRIVATE KEY----- "
            "blocks and nothing else (python manage.py generate_jwt_key makes one)"
        )
    return blocks


def _private_key(setting: str, algorithm: str, pem: str) -> PrivateKey:
    """One PEM block as a private key of the kind `algorithm` signs with."""
    label = PEM_BLOCK.match(pem).group(1)  # type: ignore[union-attr]
    if "PRIVATE KEY" not in label:
        raise ImproperlyConfigured(
            f"{setting} holds a {label.lower()}, not a private key; tokens are signed with the private key"
        )
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except TypeError:  # encrypted, and no passphrase given
        raise ImproperlyConfigured(
            f"{setting} is an encrypted private key; give it unencrypted (keep it secret as you keep "
            "SECRET_KEY: there is no passphrase setting)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # cryptography's message is not shown: nothing of a broken key reaches a log
        raise ImproperlyConfigured(
            f"{setting} is not a private key that can be read (PKCS#8 or traditional PEM, unencrypted)"
        ) from None
    if not _signs_with(algorithm, key):
        raise ImproperlyConfigured(f"{setting} must be {KEY_KIND[algorithm]} for JWT_ALGORITHM={algorithm}")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < RSA_MIN_BITS:
        raise ImproperlyConfigured(
            f"{setting} is a {key.key_size}-bit RSA key; RS256 needs at least {RSA_MIN_BITS} bits"
        )
    return key


def _signs_with(algorithm: str, key: object) -> bool:
    if algorithm == "EdDSA":
        return isinstance(key, ed25519.Ed25519PrivateKey)
    if algorithm == "ES256":
        return isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    return isinstance(key, rsa.RSAPrivateKey)


def _refuse_with_hmac(setting: str, value: str, algorithm: str) -> None:
    if value:
        raise ImproperlyConfigured(
            f"{setting} is set, but JWT_ALGORITHM={algorithm} signs with SECRET_KEY and would ignore it; "
            f"set JWT_ALGORITHM to EdDSA, ES256 or RS256, or remove {setting}"
        )


def load_algorithm(value: str) -> str:
    if value not in ALGORITHMS:
        raise ImproperlyConfigured(f"JWT_ALGORITHM must be one of {', '.join(ALGORITHMS)}, not {value!r}")
    return value


def load_private_key(algorithm: str, value: str) -> PrivateKey | None:
    """JWT_PRIVATE_KEY: a PEM (real newlines or \\n escapes) or the path of a PEM file; required by
    the asymmetric algorithms, refused with HMAC (it would be silently ignored)."""
    setting = "JWT_PRIVATE_KEY"
    if algorithm in HMAC_ALGORITHMS:
        _refuse_with_hmac(setting, value, algorithm)
        return None
    if not value:
        raise ImproperlyConfigured(
            f"{setting} is not set; JWT_ALGORITHM={algorithm} signs access tokens with a private key "
            f"(python manage.py generate_jwt_key --algorithm {algorithm} makes one)"
        )
    blocks = _pem_blocks(setting, _key_text(setting, value))
    if len(blocks) > 1:
        raise ImproperlyConfigured(
            f"{setting} holds {len(blocks)} keys; it takes the one that signs, older ones go to "
            "JWT_PRIVATE_KEY_FALLBACKS"
        )
    return _private_key(setting, algorithm, blocks[0])


def load_fallback_keys(algorithm: str, value: str) -> list[PrivateKey]:
    """JWT_PRIVATE_KEY_FALLBACKS: older private keys still accepted for verification (and published)
    during a rotation, newest first: PEM blocks one after the other, or comma-separated file paths."""
    setting = "JWT_PRIVATE_KEY_FALLBACKS"
    if algorithm in HMAC_ALGORITHMS:
        _refuse_with_hmac(setting, value, algorithm)
        return []
    if not value:
        return []
    if value.startswith(PEM_BEGIN):
        blocks = _pem_blocks(setting, _key_text(setting, value))
    else:
        paths = [part.strip() for part in value.split(",") if part.strip()]
        blocks = [block for path in paths for block in _pem_blocks(setting, _key_text(setting, path))]
    return [
        _private_key(f"{setting} (key {n} of {len(blocks)})", algorithm, block)
        for n, block in enumerate(blocks, start=1)
    ]


# --- key ids and public JWKs -------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    """A JWK integer (RFC 7518 section 2): big-endian, as few octets as hold it."""
    return _b64url(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def public_jwk_members(key: PrivateKey) -> dict[str, str]:
    """The public key's required JWK members (RFC 7518 section 6, RFC 8037 section 2): the ones the
    RFC 7638 thumbprint is computed over, and nothing private."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = key.public_key().public_numbers()
        size = (key.curve.key_size + 7) // 8  # coordinates at full length (RFC 7518 section 6.2.1.2)
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64url(numbers.x.to_bytes(size, "big")),
            "y": _b64url(numbers.y.to_bytes(size, "big")),
        }
    numbers = key.public_key().public_numbers()
    return {"kty": "RSA", "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}


def thumbprint(members: dict[str, str]) -> str:
    """RFC 7638: base64url SHA-256 of the required members, sorted, without whitespace."""
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def hmac_kid(secret: str) -> str:
    return _b64url(hmac.new(secret.encode(), HMAC_KID_LABEL, hashlib.sha256).digest()[:HMAC_KID_BYTES])


# --- the key ring --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerificationKey:
    kid: str
    key: Any  # what PyJWT verifies with: the HMAC secret, or a public key


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Everything tokens are signed and verified with under the current settings."""

    algorithm: str
    kid: str  # the signing key's
    signing_key: Any  # the HMAC secret, or the private key
    verification_keys: tuple[VerificationKey, ...]  # the signing key's first, then the fallbacks'
    by_kid: dict[str, VerificationKey]
    jwks: dict[str, list[dict[str, str]]] | None  # the public JWK Set; None with HMAC (nothing public)


def build_key_ring(
    algorithm: str,
    secret_key: str,
    secret_key_fallbacks: tuple[str, ...],
    private_key: PrivateKey | None,
    private_key_fallbacks: tuple[PrivateKey, ...],
) -> KeyRing:
    by_kid: dict[str, VerificationKey] = {}
    published: list[dict[str, str]] = []
    if algorithm in HMAC_ALGORITHMS:
        signing_key: Any = secret_key
        for secret in (secret_key, *secret_key_fallbacks):
            kid = hmac_kid(secret)
            by_kid.setdefault(kid, VerificationKey(kid, secret))
    else:
        if private_key is None:  # settings.py refuses this at start-up; an override could still do it
            raise ImproperlyConfigured(f"JWT_PRIVATE_KEY is not set; JWT_ALGORITHM={algorithm} needs one")
        signing_key = private_key
        for key in (private_key, *private_key_fallbacks):
            members = public_jwk_members(key)
            kid = thumbprint(members)
            if kid in by_kid:  # one key listed twice is published and tried once
                continue
            by_kid[kid] = VerificationKey(kid, key.public_key())
            published.append({**members, "kid": kid, "alg": algorithm, "use": "sig"})
    return KeyRing(
        algorithm=algorithm,
        kid=next(iter(by_kid)),  # dicts keep their order: the signing key's comes first
        signing_key=signing_key,
        verification_keys=tuple(by_kid.values()),
        by_kid=by_kid,
        jwks={"keys": published} if published else None,
    )


_ring: tuple[tuple, KeyRing] | None = None


def key_ring() -> KeyRing:
    """The key ring for the settings as they are now, built once per change of them."""
    # Imported here: settings.py imports this module to parse the keys, so a module-level import
    # would be circular.
    import settings

    global _ring
    source = (
        settings.JWT_ALGORITHM,
        settings.SECRET_KEY,
        tuple(settings.SECRET_KEY_FALLBACKS),
        settings.JWT_PRIVATE_KEY,
        tuple(settings.JWT_PRIVATE_KEY_FALLBACKS),
    )
    # Compared element by element: keys compare by identity, which the tuple comparison tries first.
    if _ring is None or _ring[0] != source:
        _ring = (source, build_key_ring(*source))
    return _ring[1]


# --- new keys (manage.py generate_jwt_key) ---------------------------------------------------------------


def generate_private_key(algorithm: str) -> PrivateKey:
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_NEW_BITS)
    raise ValueError(f"no private key for {algorithm}")


def private_pem(key: PrivateKey) -> str:
    """PKCS#8 PEM, unencrypted: what JWT_PRIVATE_KEY takes."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
