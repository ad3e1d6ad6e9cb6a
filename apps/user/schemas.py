"""Request and response bodies. Unknown fields are refused (extra="forbid"), never ignored."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    RootModel,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

import settings
from apps.core.schemas import Query, refuse_nul
from apps.user import password_policy
from apps.user.models import normalize_email, normalize_username

# Django's UnicodeUsernameValidator: letters, digits and @ . + - _
USERNAME_PATTERN = re.compile(r"^[\w.@+-]+\Z")


def _check_username(value: str) -> str:
    value = normalize_username(value)
    if not 1 <= len(value) <= 150:
        raise ValueError("Enter a username of 1 to 150 characters.")
    if not USERNAME_PATTERN.match(value):
        raise ValueError("Use only letters, digits and @ . + - _ in a username.")
    return value


def _strip_email(value: object) -> object:
    return normalize_email(value) if isinstance(value, str) else value


# The checks run in validators (for Django's messages, after NFKC); the OpenAPI document states the rule.
Username = Annotated[
    str,
    AfterValidator(_check_username),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": 150,
            "pattern": r"^[\w.@+-]+$",
            "description": "Letters, digits and @ . + - _; unique in any case",
        }
    ),
]
Email = Annotated[EmailStr, BeforeValidator(_strip_email), AfterValidator(normalize_email)]
NewPassword = Annotated[
    str,
    AfterValidator(password_policy.check_length),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": settings.PASSWORD_MIN_LENGTH,
            "maxLength": settings.PASSWORD_MAX_LENGTH,
            "description": "No composition rules",
        }
    ),
]


class Body(BaseModel):
    # strict: JSON types as sent ("no" is not false, 1 is not "1"); unknown fields refused
    model_config = ConfigDict(extra="forbid", strict=True, str_max_length=4096)

    @field_validator("*", mode="before")
    @classmethod
    def no_nul(cls, value: object) -> object:
        """No field of any body takes U+0000 (apps/core/schemas.py says why); 422 naming the field."""
        return refuse_nul(value)


class RegisterIn(Body):
    username: Username
    email: Email
    password: NewPassword


# A PublicKeyCredential in its JSON form (credential.toJSON(): id, rawId, type, and a response whose
# binary members are base64url); py_webauthn parses and checks it (passkeys.py).
Credential = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "additionalProperties": True,
            "description": "A PublicKeyCredential as JSON (credential.toJSON()): id, rawId, type, response",
        }
    ),
]


class Confirmed(Body):
    """A sensitive change, confirmed by the owner: the account's password; or, for an account without a
    usable password (made by the staff, or imported without one), a passkey's answer to
    POST /user/passkeys/reauth/options (accounts.Confirmation)."""

    passkey: Credential | None = None
    password: str | None = Field(None, validate_default=True)

    @field_validator("password", mode="after")
    @classmethod
    def password_or_passkey(cls, value: str | None, info: ValidationInfo) -> str | None:
        passkey = info.data.get("passkey")
        if value is None and passkey is None:
            raise PydanticCustomError("missing", "Field required")
        if value is not None and passkey is not None:
            raise PydanticCustomError("confirmation", "Send either password or passkey, not both.")
        return value


class LoginIn(Body):
    email: str | None = None
    username: str | None = None
    # Not length-checked beyond the body limit's sanity cap: a login must not reveal the policy.
    password: str

    @model_validator(mode="after")
    def one_identifier(self) -> Self:
        if (self.email is None) == (self.username is None):
            raise ValueError("Send either email or username, not both and not neither.")
        return self


class RefreshIn(Body):
    refresh_token: str


class CookieRefreshIn(Body):
    """The cookie transport's refresh: the token is the cookie; the body is `{}`."""


class PatchBody(Body):
    """PATCH semantics: an absent field is left alone, and null is not a value any field can take."""

    @field_validator("*", mode="before")
    @classmethod
    def not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("This field cannot be null; leave it out to keep the current value.")
        return value


class ProfileUpdateIn(PatchBody):
    username: Username | None = None
    # Not a field any more: the email changes only through a link mailed to the new address. Kept
    # (out of the OpenAPI document) to answer a client that still sends it with where to go instead.
    email: SkipJsonSchema[object] = Field(None, exclude=True)

    @field_validator("email", mode="before")
    @classmethod
    def email_has_its_own_route(cls, value: object) -> object:
        raise ValueError("Change the email with POST /user/me/email: a link to the new address confirms it.")


class EmailChangeIn(Confirmed):
    email: Email


class LinkTokenIn(Body):
    token: str = Field(description="The token of the mailed link (its `token` query parameter)")


class PasswordResetIn(Body):
    email: Email


class PasswordResetConfirmIn(Body):
    token: str = Field(description="The token of the mailed link (its `token` query parameter)")
    new_password: NewPassword


class PasswordChangeIn(Body):
    current_password: str
    new_password: NewPassword


class AccountDeleteIn(Confirmed):
    pass


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    email: str
    is_active: bool
    is_staff: bool
    email_verified: bool
    pending_email: str | None = Field(
        description="A new address waiting for its verification link (POST /user/me/email); it "
        "becomes `email` once verified"
    )
    has_usable_password: bool = Field(
        description="False for an account without a password (created without one, or imported with "
        "a hasher this service cannot check): it confirms sensitive changes with a passkey, and sets a "
        "password through the reset link"
    )
    date_joined: datetime
    last_login: datetime | None


class TokenPairOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 (RFC 6750 scheme name)
    expires_in: int
    user: UserOut


class BrowserTokenOut(BaseModel):
    """A token response in the cookie transport (`X-Token-Transport: cookie`): the refresh token is
    in an HttpOnly cookie scoped to POST /user/refresh-token, never in a body a script can read."""

    access_token: str
    token_type: str = "Bearer"  # noqa: S105 (RFC 6750 scheme name)
    expires_in: int
    user: UserOut


class AcceptedOut(BaseModel):
    """202: the request is written down; what it causes (a mail) happens after the answer."""

    detail: str


class RegisteredOut(BaseModel):
    """Registration with EMAIL_VERIFICATION mandatory: the account, and no tokens until it is verified."""

    user: UserOut


class RegistrationOut(RootModel[TokenPairOut | RegisteredOut]):
    pass


class SecondFactorRequiredOut(BaseModel):
    """The password was right; finish the login with POST /user/login/mfa (or /user/login/passkey
    options bound to this attempt) within 5 minutes. No tokens yet."""

    mfa_required: bool = True
    mfa_token: str
    methods: list[str]  # "totp", "recovery_code", "passkey"


class LoginOut(RootModel[TokenPairOut | SecondFactorRequiredOut]):
    pass


class PasswordIn(Confirmed):
    pass


class TOTPSetupOut(BaseModel):
    secret: str  # base32, for typing into an app by hand
    otpauth_uri: str
    qr_svg: str  # the otpauth URI as a QR code, an SVG document


# a TOTP code (6 digits) or a recovery code (xxxxx-xxxxx); spaces and dashes are forgiven
Code = Annotated[str, Field(min_length=1, max_length=32)]


class CodeIn(Body):
    code: Code


class PasswordAndCodeIn(Confirmed):
    code: Code


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str]  # shown once: only digests are kept


class SecondFactorIn(Body):
    mfa_token: str = Field(max_length=4096)
    code: Code | None = None
    recovery_code: Code | None = None
    passkey: Credential | None = None

    @model_validator(mode="after")
    def one_factor(self) -> Self:
        if sum(factor is not None for factor in (self.code, self.recovery_code, self.passkey)) != 1:
            raise ValueError("Send one of code, recovery_code or passkey.")
        return self


# --- passkeys (passkeys.py) ----------------------------------------------------------------------


def _strip_name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("Give the passkey a name.")
    return value


PasskeyName = Annotated[
    str,
    Field(min_length=1, max_length=100),
    AfterValidator(_strip_name),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 100, "description": "Shown in the list"}),
]


class PasskeyCreateIn(Body):
    credential: Credential = Field(description="The answer of navigator.credentials.create(), as JSON")
    name: PasskeyName = "Passkey"


class PasskeyRenameIn(Body):
    name: PasskeyName


class PasskeyDeleteIn(Confirmed):
    pass


class PasskeyLoginOptionsIn(Body):
    """No mfa_token (or no body): a passwordless login. An mfa_token: the second factor of that login."""

    mfa_token: str | None = Field(None, max_length=200)


class PasskeyLoginIn(Body):
    credential: Credential = Field(description="The answer of navigator.credentials.get(), as JSON")


class PasskeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None


class PasskeyList(RootModel[list[PasskeyOut]]):
    pass


class CreationOptionsOut(RootModel[dict[str, Any]]):
    """PublicKeyCredentialCreationOptions in their JSON form (binary members base64url, as
    PublicKeyCredential.parseCreationOptionsFromJSON() takes them)."""


class RequestOptionsOut(RootModel[dict[str, Any]]):
    """PublicKeyCredentialRequestOptions in their JSON form (binary members base64url, as
    PublicKeyCredential.parseRequestOptionsFromJSON() takes them)."""


class SessionOut(BaseModel):
    """One live session: a login, the device and address it came from."""

    id: str
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    user_agent: str
    ip_address: str | None
    current: bool = Field(description="The session this access token belongs to")

    @classmethod
    def of(cls, session, *, current: str | None) -> SessionOut:
        return cls(
            id=str(session.id),
            created_at=session.created_at,
            last_used_at=session.last_used_at,
            expires_at=session.expires_at,
            user_agent=session.user_agent,
            ip_address=session.ip_address,
            current=str(session.id) == current,
        )


class SessionList(RootModel[list[SessionOut]]):
    pass


MAX_PAGE_SIZE = 200
# No list holds more rows than ids (a 32-bit column), so no later page can hold anything; the bound
# keeps (page - 1) * page_size far inside a 64-bit OFFSET on both databases, and inside a JS number.
MAX_PAGE = 2**31 - 1


class PageQuery(Query):
    page: int = Field(1, ge=1, le=MAX_PAGE, description="1-based page number")
    page_size: int = Field(50, ge=1, le=MAX_PAGE_SIZE, description=f"Items per page, at most {MAX_PAGE_SIZE}")


class EventQuery(PageQuery):
    pass


class EventOut(BaseModel):
    """Something that happened to the account: never a password, a token or a code."""

    model_config = ConfigDict(from_attributes=True)

    type: str
    at: datetime
    ip_address: str | None
    user_agent: str


class EventPage(BaseModel):
    count: int
    page: int
    page_size: int
    results: list[EventOut]


# --- the JWK Set (GET /.well-known/jwks.json) ----------------------------------------------------------
# One model per key type, each with its public members only: extra="forbid" makes a private member
# (d, p, q, ...) a server error rather than a leak, and the OpenAPI document says so. Members are in
# RFC 7517's usual order (kty first), so each model lists all of its own.

PUBLIC_ONLY = ConfigDict(extra="forbid")
Kid = Annotated[str, Field(description="The key's RFC 7638 thumbprint; an access token's header names it")]


class OKPPublicJWK(BaseModel):
    model_config = PUBLIC_ONLY

    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str
    kid: Kid
    alg: Literal["EdDSA"]
    use: Literal["sig"]


class ECPublicJWK(BaseModel):
    model_config = PUBLIC_ONLY

    kty: Literal["EC"]
    crv: Literal["P-256"]
    x: str
    y: str
    kid: Kid
    alg: Literal["ES256"]
    use: Literal["sig"]


class RSAPublicJWK(BaseModel):
    model_config = PUBLIC_ONLY

    kty: Literal["RSA"]
    n: str
    e: str
    kid: Kid
    alg: Literal["RS256"]
    use: Literal["sig"]


class JWKSetOut(BaseModel):
    """RFC 7517 section 5: the signing key first, then the fallbacks still accepted."""

    keys: list[Annotated[OKPPublicJWK | ECPublicJWK | RSAPublicJWK, Field(discriminator="kty")]]
