"""Settings, Django style: the only module that reads the environment and `.env`.

Every setting is an UPPER_SNAKE module attribute, read once at import. Bad configuration fails here,
at start-up, with a message naming the setting, never later inside a request. Code reads settings as
`settings.NAME` at call time, so tests can override one attribute.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import limits
from dotenv import load_dotenv

from apps.core.exceptions import ImproperlyConfigured
from apps.user import keys

BASE_DIR = Path(__file__).resolve().parent

# The real environment wins over .env, as with Django's django-environ and twelve-factor apps.
load_dotenv(BASE_DIR / ".env", override=False)


def _str(name: str, default: str = "") -> str:
    # An empty value (as in .env.example) means "not set": the default applies.
    return os.environ.get(name, "").strip() or default


def _bool(name: str, default: bool) -> bool:
    raw = _str(name)
    if not raw:
        return default
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def _int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = _str(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


def _float(name: str, default: float, *, minimum: float) -> float:
    raw = _str(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from None
    if not value >= minimum:  # NaN too
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {raw}")
    return value


def _list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in _str(name, default).split(",") if item.strip()]


DEBUG = _bool("DEBUG", False)
LOG_LEVEL = _str("LOG_LEVEL", "INFO").upper()
# One line per request from the app itself (with the request id); run uvicorn with --no-access-log.
ACCESS_LOG = _bool("ACCESS_LOG", True)
# text: today's lines for people (`time LEVEL logger [request id] message`); json: one JSON object per
# line for a log collector, with the request id, client IP and user id as fields (apps/core/logs.py).
LOG_FORMAT = _str("LOG_FORMAT", "text").lower()
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}")

# The apps of this project, Django's INSTALLED_APPS: an app's apps.py registers what it starts and
# stops (apps/core/lifecycle.py).
INSTALLED_APPS = ["apps.user", "apps.admin", "apps.mail"]

# --- secrets -------------------------------------------------------------------------------------
# The value shipped in .env.example; a deployment that kept it would sign tokens anyone can forge.
EXAMPLE_SECRET_KEY = "change-me-to-a-long-random-string"  # noqa: S105 (the refused value)
SECRET_KEY_MIN_LENGTH = 32


def _limit(name: str, default: str) -> limits.RateLimitItem | None:
    """A rate limit in the `limits` notation ("10/minute", "5 per 15 minutes"), or `off` (None)."""
    value = _str(name, default)
    if value.strip().lower() == "off":
        return None
    try:
        return limits.parse(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be a limit like 10/minute or '5 per 15 minutes', or off; not {value!r}"
        ) from None


def _secret_key(name: str, value: str) -> str:
    if value == EXAMPLE_SECRET_KEY or "change-me" in value:
        raise ImproperlyConfigured(f"{name} is the example value from .env.example; generate a real one")
    if len(value) < SECRET_KEY_MIN_LENGTH:
        raise ImproperlyConfigured(
            f"{name} is {len(value)} characters; use at least {SECRET_KEY_MIN_LENGTH} "
            '(python -c "import secrets; print(secrets.token_urlsafe(50))")'
        )
    return value


_raw_secret = _str("SECRET_KEY")
if _raw_secret:
    SECRET_KEY = _secret_key("SECRET_KEY", _raw_secret)
elif DEBUG:
    # Development only: a per-process key, so tokens die with the process. `make run` writes a stable
    # one into .env instead.
    SECRET_KEY = secrets.token_urlsafe(50)
else:
    raise ImproperlyConfigured("SECRET_KEY is not set; it has no default outside DEBUG (see .env.example)")

# Older keys still accepted when verifying tokens, newest first, so a key can be rotated without
# logging everybody out (Django's SECRET_KEY_FALLBACKS).
SECRET_KEY_FALLBACKS = [_secret_key("SECRET_KEY_FALLBACKS", key) for key in _list("SECRET_KEY_FALLBACKS")]

# --- HTTP ----------------------------------------------------------------------------------------
ALLOWED_HOSTS = _list("ALLOWED_HOSTS", "localhost,127.0.0.1")
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is empty; list the host names this service answers to")

CORS_ALLOWED_ORIGINS = _list("CORS_ALLOWED_ORIGINS")
if "*" in CORS_ALLOWED_ORIGINS:
    raise ImproperlyConfigured("CORS_ALLOWED_ORIGINS must list origins explicitly; '*' is refused")
for _origin in CORS_ALLOWED_ORIGINS:
    _parts = urlsplit(_origin)
    if _parts.scheme not in {"http", "https"} or not _parts.netloc or _parts.path not in {"", "/"}:
        raise ImproperlyConfigured(
            f"CORS_ALLOWED_ORIGINS entry {_origin!r} is not an origin like https://app.example.com"
        )

# Per-worker cache of live sessions; a revocation removes the sessions it ended from every worker's
# cache, on every host (apps/user/revocation.py). Off: every authenticated request queries its session.
SESSION_CACHE = _bool("SESSION_CACHE", True)
SESSION_CACHE_TTL = _int("SESSION_CACHE_TTL", 60, minimum=0)  # seconds; bounds staleness of out-of-band edits
# The shared counter telling workers on this host that sessions ended (default: /dev/shm, one per database).
REVOCATION_EPOCH_FILE = _str("REVOCATION_EPOCH_FILE")

# The built web app (frontend/, `make run` builds it), served at / when it exists (apps/core/spa.py).
FRONTEND_DIST = Path(_str("FRONTEND_DIST", str(BASE_DIR / "frontend" / "dist")))

# The SPA's base URL: links in mails and the /.well-known/change-password redirect point there.
FRONTEND_URL = _str("FRONTEND_URL", "http://localhost:5173").rstrip("/")
_frontend = urlsplit(FRONTEND_URL)
if _frontend.scheme not in {"http", "https"} or not _frontend.netloc:
    raise ImproperlyConfigured(
        f"FRONTEND_URL must be an http(s) URL like https://app.example.com, not {FRONTEND_URL!r}"
    )

# --- second factors (apps/user/mfa.py, passkeys.py) ----------------------------------------------------
# The name authenticator apps show beside the account, and passkey prompts as the relying party's.
SITE_NAME = _str("SITE_NAME", "authservice")
# WebAuthn: the relying party id is the site's registrable domain (passkeys are bound to it: changing
# it later orphans every passkey), the origins are the pages allowed to use them (the SPA's).
WEBAUTHN_RP_ID = _str("WEBAUTHN_RP_ID", _frontend.hostname or "localhost")
WEBAUTHN_ORIGINS = [
    o.strip().rstrip("/") for o in _str("WEBAUTHN_ORIGINS", FRONTEND_URL).split(",") if o.strip()
]
for _origin in WEBAUTHN_ORIGINS:
    _host = urlsplit(_origin).hostname or ""
    if urlsplit(_origin).scheme not in {"http", "https"} or not (
        _host == WEBAUTHN_RP_ID or _host.endswith("." + WEBAUTHN_RP_ID)
    ):
        raise ImproperlyConfigured(
            f"WEBAUTHN_ORIGINS entry {_origin!r} must be an http(s) origin on WEBAUTHN_RP_ID "
            f"({WEBAUTHN_RP_ID!r}) or one of its subdomains"
        )
# How long a second-factor login attempt (its mfa_token) and a WebAuthn challenge live, in seconds.
MFA_TIMEOUT = 300

# --- mail (Django's setting names) --------------------------------------------------------------------
EMAIL_BACKEND = _str("EMAIL_BACKEND", "console")
if EMAIL_BACKEND not in {"console", "smtp"}:
    raise ImproperlyConfigured(f"EMAIL_BACKEND must be console or smtp, not {EMAIL_BACKEND!r}")
EMAIL_HOST = _str("EMAIL_HOST", "localhost")
EMAIL_PORT = _int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = _str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = _str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = _bool("EMAIL_USE_TLS", False)  # STARTTLS
EMAIL_USE_SSL = _bool("EMAIL_USE_SSL", False)  # implicit TLS (port 465)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL are mutually exclusive (as in Django)")
EMAIL_TIMEOUT = _int("EMAIL_TIMEOUT", 10, minimum=1)  # seconds per delivery attempt
DEFAULT_FROM_EMAIL = _str("DEFAULT_FROM_EMAIL", "webmaster@localhost")
# The outbox's sender (one task per worker process): how often it looks for due mail, the longest
# wait between two attempts of a mail, and when it gives a mail up (seconds since it was queued).
MAIL_SENDER = _bool("MAIL_SENDER", True)
MAIL_POLL_INTERVAL = _int("MAIL_POLL_INTERVAL", 1, minimum=1)
MAIL_RETRY_MAX_DELAY = _int("MAIL_RETRY_MAX_DELAY", 300, minimum=1)
MAIL_GIVE_UP_AFTER = _int("MAIL_GIVE_UP_AFTER", 3 * 24 * 3600, minimum=60)

# --- email verification and password reset (allauth's and Django's names) ---------------------------
# none: no link at registration; optional: a link, and unverified accounts log in; mandatory: no
# tokens until the address is verified (registration answers the user only, login answers 403).
EMAIL_VERIFICATION = _str("EMAIL_VERIFICATION", "optional")
if EMAIL_VERIFICATION not in {"none", "optional", "mandatory"}:
    raise ImproperlyConfigured(
        f"EMAIL_VERIFICATION must be none, optional or mandatory, not {EMAIL_VERIFICATION!r}"
    )
EMAIL_VERIFICATION_TIMEOUT = _int("EMAIL_VERIFICATION_TIMEOUT", 3 * 24 * 3600, minimum=1)  # seconds
PASSWORD_RESET_TIMEOUT = _int("PASSWORD_RESET_TIMEOUT", 3600, minimum=1)  # seconds

# --- throttling (apps/core/throttle.py) -----------------------------------------------------------------
# Counters in Redis when REDIS_URL is set (shared by every worker and host), else in each process.
REDIS_URL = _str("REDIS_URL")
if REDIS_URL and urlsplit(REDIS_URL).scheme not in {"redis", "rediss", "unix"}:
    raise ImproperlyConfigured(f"REDIS_URL must be a redis://, rediss:// or unix:// URL, not {REDIS_URL!r}")
# Failed logins per account (as typed: email or username) and client IP; a success clears it.
THROTTLE_LOGIN_ACCOUNT = _limit("THROTTLE_LOGIN_ACCOUNT", "10 per 15 minutes")
THROTTLE_LOGIN_IP = _limit("THROTTLE_LOGIN_IP", "100 per 15 minutes")  # every login attempt per client IP
THROTTLE_REGISTER_IP = _limit("THROTTLE_REGISTER_IP", "20/hour")
# Mails anyone can have sent: reset requests per address and per client IP; verification and email
# change mails per account.
THROTTLE_PASSWORD_RESET = _limit("THROTTLE_PASSWORD_RESET", "5/hour")
THROTTLE_MFA = _limit("THROTTLE_MFA", "5 per 5 minutes")  # second-factor attempts per login attempt
# The proxies whose X-Forwarded-For names the client (uvicorn's setting, read by uvicorn from the
# environment: set it there, not only in .env). The throttles count per client IP.
FORWARDED_ALLOW_IPS = _list("FORWARDED_ALLOW_IPS", "127.0.0.1")

# Days an account's history (GET /user/events) is kept; `manage.py clearevents` removes older events.
EVENT_RETENTION_DAYS = _int("EVENT_RETENTION_DAYS", 365, minimum=1)

# --- metrics (apps/core/metrics.py) ----------------------------------------------------------------
# Prometheus metrics at GET /metrics, for the addresses listed here only; anyone else (and everyone
# while METRICS_ENABLED is false) gets the 404 of an unknown path. Off by default: no middleware at all.
METRICS_ENABLED = _bool("METRICS_ENABLED", False)


def _networks(name: str, default: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for entry in _list(name, default):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} entry {entry!r} is not an IP address or network like 10.0.0.0/8"
            ) from None
    return tuple(networks)


# Addresses or networks (client IP as uvicorn reports it, after FORWARDED_ALLOW_IPS) that may scrape.
METRICS_ALLOWED_IPS = _networks("METRICS_ALLOWED_IPS", "127.0.0.1,::1")
# prometheus_client's own variable: a directory where every worker process of one server writes its
# metrics, so that a scrape answered by any worker reports the totals of all (uvicorn --workers N).
# Empty: each process reports its own. Read here so that .env can set it; the metrics module hands it
# to prometheus_client.
PROMETHEUS_MULTIPROC_DIR = _str("PROMETHEUS_MULTIPROC_DIR")
if PROMETHEUS_MULTIPROC_DIR:
    PROMETHEUS_MULTIPROC_DIR = os.path.abspath(PROMETHEUS_MULTIPROC_DIR)

# /openapi.json and /docs: on in DEBUG, off otherwise unless enabled here.
API_DOCS = _bool("API_DOCS", DEBUG)

MAX_BODY_SIZE = _int("MAX_BODY_SIZE", 64 * 1024, minimum=1024)

# --- database ------------------------------------------------------------------------------------
DATABASE_URL = _str("DATABASE_URL", f"sqlite://{BASE_DIR / 'db.sqlite3'}")
if urlsplit(DATABASE_URL).scheme not in {"sqlite", "postgres", "postgresql", "asyncpg"}:
    raise ImproperlyConfigured("DATABASE_URL must be sqlite://<path> or postgres://user@host:port/db")

# How revocations reach the workers of other hosts (apps/user/revocation.py); workers of one host also
# share the host-local counter file. auto: PostgreSQL LISTEN/NOTIFY when the database is PostgreSQL
# (the notice is part of the commit that ends the session), none on SQLite (one host). redis: pub/sub
# on REDIS_URL. local: the host-local counter alone (every worker on one host).
REVOCATION_SIGNAL = _str("REVOCATION_SIGNAL", "auto").lower()
if REVOCATION_SIGNAL not in {"auto", "postgres", "redis", "local"}:
    raise ImproperlyConfigured(
        f"REVOCATION_SIGNAL must be auto, postgres, redis or local, not {REVOCATION_SIGNAL!r}"
    )
if REVOCATION_SIGNAL == "postgres" and urlsplit(DATABASE_URL).scheme == "sqlite":
    raise ImproperlyConfigured("REVOCATION_SIGNAL=postgres needs a PostgreSQL DATABASE_URL")
if REVOCATION_SIGNAL == "redis" and not REDIS_URL:
    raise ImproperlyConfigured("REVOCATION_SIGNAL=redis needs REDIS_URL")
# Seconds a request waits on PostgreSQL at most, per wait: to connect, for a pooled connection, for
# one statement (apps/core/database.py, bounded()). Past it the request is answered 503 with
# Retry-After. A request can line up three such waits, so the default keeps the 503 within 2 s.
# SQLite: twice this for its one connection, which every request of the process shares.
DATABASE_TIMEOUT = _float("DATABASE_TIMEOUT", 0.5, minimum=0.05)


def tortoise_config(database_url: str) -> dict:
    """The Tortoise ORM configuration for one database; tests build theirs with it too."""
    from tortoise.backends.base.config_generator import expand_db_url

    connection = expand_db_url(database_url)
    if connection["engine"] == "tortoise.backends.asyncpg":
        from apps.core.database import PooledConnection

        connection["credentials"]["connection_class"] = PooledConnection
    return {
        "connections": {"default": connection},
        "apps": {
            "user": {
                "models": ["apps.user.models"],
                "default_connection": "default",
                "migrations": "apps.user.migrations",
            },
            "mail": {
                "models": ["apps.mail.models"],
                "default_connection": "default",
                "migrations": "apps.mail.migrations",
            },
        },
        "use_tz": True,
        "timezone": "UTC",
    }


TORTOISE_ORM = tortoise_config(DATABASE_URL)

# --- tokens --------------------------------------------------------------------------------------
# How access tokens are signed, pinned: a token's own header never chooses. HS256/HS384/HS512: an
# HMAC with SECRET_KEY, which only this service can check (others ask GET /user/verify). EdDSA, ES256,
# RS256: a signature with JWT_PRIVATE_KEY, whose public key GET /.well-known/jwks.json publishes so
# that other services verify tokens offline (apps/user/keys.py).
JWT_ALGORITHM = keys.load_algorithm(_str("JWT_ALGORITHM", "HS256"))
# The private key (a PEM, with real newlines or \n escapes, or the path of a PEM file), parsed here
# once: the attribute holds the key object, never the text. Required by the asymmetric algorithms.
JWT_PRIVATE_KEY = keys.load_private_key(JWT_ALGORITHM, _str("JWT_PRIVATE_KEY"))
# Older private keys still accepted, and still published, during a rotation (PEMs one after the
# other, or comma-separated paths), newest first.
JWT_PRIVATE_KEY_FALLBACKS = keys.load_fallback_keys(JWT_ALGORITHM, _str("JWT_PRIVATE_KEY_FALLBACKS"))
JWT_ISSUER = _str("JWT_ISSUER", "authservice")
JWT_AUDIENCE = _str("JWT_AUDIENCE", "authservice")
ACCESS_TOKEN_LIFETIME = _int("ACCESS_TOKEN_LIFETIME", 15 * 60, minimum=30)  # seconds
REFRESH_TOKEN_LIFETIME = _int("REFRESH_TOKEN_LIFETIME", 14 * 24 * 3600, minimum=60)  # seconds, sliding
# Cookie mode only (browsers, apps/user/transport.py): a refresh token spent this many seconds ago,
# presented again, answers the same new refresh token instead of ending the session as a replay.
# Tabs of one browser share the cookie and refresh at once when they wake; 10 s covers that and a
# retry after a lost answer, while a cookie replayed later still ends the session. 0: no grace.
REFRESH_TOKEN_REUSE_GRACE = _int("REFRESH_TOKEN_REUSE_GRACE", 10, minimum=0)
# However active it is, a session ends this long after its login (seconds): a stolen refresh chain
# cannot be kept alive for ever.
SESSION_MAX_LIFETIME = _int("SESSION_MAX_LIFETIME", 30 * 24 * 3600, minimum=60)

# --- passwords -----------------------------------------------------------------------------------
# argon2id at OWASP's recommended minimum (m=19 MiB, t=2, p=1).
PASSWORD_HASHER_MEMORY_COST = _int("PASSWORD_HASHER_MEMORY_COST", 19456, minimum=8)  # KiB
PASSWORD_HASHER_TIME_COST = _int("PASSWORD_HASHER_TIME_COST", 2, minimum=1)
PASSWORD_HASHER_PARALLELISM = _int("PASSWORD_HASHER_PARALLELISM", 1, minimum=1)
# Threads that hash: argon2-cffi releases the GIL, so hashing runs beside the event loop, not on it.
# Default: one core left to the event loop (and the database), at most 4.
PASSWORD_HASHER_THREADS = _int(
    "PASSWORD_HASHER_THREADS", max(1, min(4, (os.cpu_count() or 1) - 1)), minimum=1
)
# Load shedding: a hashing request (login, register, password change) is refused at once with 503 and
# Retry-After when the queue ahead of it would take longer than this many seconds to drain.
PASSWORD_HASHER_MAX_WAIT = _int("PASSWORD_HASHER_MAX_WAIT", 2, minimum=1)
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = _int("PASSWORD_MAX_LENGTH", 128, minimum=64)
# Refuse new passwords found in Have I Been Pwned's breaches (only a 5-hex-digit prefix of the
# SHA-1 leaves the service). Off by default: it calls an outside API; it fails open when that API
# cannot be reached in PASSWORD_BREACH_TIMEOUT seconds.
PASSWORD_BREACH_CHECK = _bool("PASSWORD_BREACH_CHECK", False)
PASSWORD_BREACH_API = _str("PASSWORD_BREACH_API", "https://api.pwnedpasswords.com/range/")
PASSWORD_BREACH_TIMEOUT = _int("PASSWORD_BREACH_TIMEOUT", 2, minimum=1)
