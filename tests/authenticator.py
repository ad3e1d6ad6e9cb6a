"""A software WebAuthn authenticator and browser in one, for tests that talk HTTP: it answers the
service's options with real attestations and assertions (an ES256 key made with `cryptography`,
"none" attestation, authenticator data with the RP id's hash, the UP/UV/AT flags, a sign count and a
COSE key encoded with `cbor2`), as navigator.credentials.create()/get() hand them to an SPA in their
JSON form. Each knob a test needs to make a bad answer is a keyword: the origin, the RP id, the flags,
the counter, the user handle.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

ORIGIN = "http://localhost:5173"  # FRONTEND_URL's default, so WEBAUTHN_ORIGINS's and WEBAUTHN_RP_ID's
RP_ID = "localhost"

UP, UV, AT = 0x01, 0x04, 0x40  # authenticator data flags: user present, user verified, attested data


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Credential:
    id: bytes
    key: ec.EllipticCurvePrivateKey
    user_handle: bytes
    rp_id: str
    sign_count: int = 0


class SoftwareAuthenticator:
    """Holds discoverable credentials; `counter=False` makes one that always reports 0 (as synced
    passkeys do)."""

    aaguid = bytes(range(16))

    def __init__(self, *, counter: bool = True) -> None:
        self.counter = counter
        self.credentials: list[Credential] = []

    @staticmethod
    def _client_data(kind: str, challenge: str, origin: str, cross_origin: bool) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": cross_origin}
        ).encode()

    def create(
        self,
        options: dict,
        *,
        origin: str = ORIGIN,
        rp_id: str | None = None,
        user_verified: bool = True,
        cross_origin: bool = False,
        again: Credential | None = None,
    ) -> dict:
        """navigator.credentials.create({publicKey: options}), answered as credential.toJSON().

        `again`: answer with that credential once more, as an authenticator that ignored
        excludeCredentials would."""
        rp_id = rp_id or options["rp"]["id"]
        if again is None:
            excluded = {from_b64url(c["id"]) for c in options.get("excludeCredentials", [])}
            assert not excluded & {c.id for c in self.credentials if c.rp_id == rp_id}, "excluded credential"
            key = ec.generate_private_key(ec.SECP256R1())
            credential = Credential(os.urandom(32), key, from_b64url(options["user"]["id"]), rp_id)
            self.credentials.append(credential)
        else:
            credential, key = again, again.key
        numbers = key.public_key().public_numbers()
        cose_key = cbor2.dumps(
            {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
        )
        attested = self.aaguid + struct.pack(">H", len(credential.id)) + credential.id + cose_key
        flags = UP | AT | (UV if user_verified else 0)
        auth_data = hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + struct.pack(">I", 0) + attested
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"], origin, cross_origin)
        return {
            "id": b64url(credential.id),
            "rawId": b64url(credential.id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal", "hybrid"],
            },
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
        }

    def get(
        self,
        options: dict,
        *,
        origin: str = ORIGIN,
        rp_id: str | None = None,
        user_verified: bool = True,
        user_present: bool = True,
        credential: Credential | None = None,
        sign_count: int | None = None,
        user_handle: bytes | None | bool = True,
        cross_origin: bool = False,
    ) -> dict:
        """navigator.credentials.get({publicKey: options}), answered as credential.toJSON().

        The credential is `credential`, else the first allowed one (allowCredentials), else the first
        discoverable one for the RP. `sign_count` overrides the counter; `user_handle` True sends the
        stored handle, None none, bytes those bytes.
        """
        asked = options.get("rpId") or RP_ID
        rp_id = rp_id or asked  # what the authenticator data says, whatever the RP asked
        if credential is None:
            allowed = {from_b64url(c["id"]) for c in options.get("allowCredentials", [])}
            credential = next(
                c for c in self.credentials if (c.id in allowed if allowed else c.rp_id == asked)
            )
        if sign_count is None:
            if self.counter:
                credential.sign_count += 1
            sign_count = credential.sign_count if self.counter else 0
        flags = (UP if user_present else 0) | (UV if user_verified else 0)
        auth_data = hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + struct.pack(">I", sign_count)
        client_data = self._client_data("webauthn.get", options["challenge"], origin, cross_origin)
        signature = credential.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        handle = credential.user_handle if user_handle is True else user_handle
        return {
            "id": b64url(credential.id),
            "rawId": b64url(credential.id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(handle) if handle is not None else None,
            },
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
        }
