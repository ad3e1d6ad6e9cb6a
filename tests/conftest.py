"""Test harness: the real ASGI app over HTTP (httpx), on a real database, migrated by manage.py.

Every test runs once on SQLite and, when TEST_DATABASE_URL points at a PostgreSQL server, once more
on a fresh PostgreSQL database created for the run (and dropped after it).
"""

from __future__ import annotations

import os
import secrets

# Settings are read at import: fix the environment first, whatever a developer's .env says.
os.environ.update(
    SECRET_KEY="test-" + secrets.token_urlsafe(48),
    DEBUG="false",
    ALLOWED_HOSTS="testserver,localhost,127.0.0.1",
    CORS_ALLOWED_ORIGINS="http://localhost:5173",
    DATABASE_URL="sqlite://:memory:",
    LOG_LEVEL="INFO",
    # The outbox's background sender stays off in tests that do not ask for it: they run its rounds
    # themselves (outbox.send_due), so what is sent, and when, is theirs to say.
    MAIL_SENDER="false",
    # Tests register and log in hundreds of times from one client address: no throttle applies unless
    # a test sets one (tests/http/test_throttling.py); a live server inherits this too.
    THROTTLE_LOGIN_ACCOUNT="off",
    THROTTLE_LOGIN_IP="off",
    THROTTLE_REGISTER_IP="off",
    THROTTLE_PASSWORD_RESET="off",
    THROTTLE_MFA="off",
    EMAIL_BACKEND="smtp",
    EMAIL_HOST="127.0.0.1",
    EMAIL_PORT="9",
    # The suite shares a loaded machine (two databases, CI, a browser): a statement that now and then
    # waits past the production default (0.5 s) there is the machine's, not the code's, and must not
    # turn into a 503 that fails an unrelated test. The fault tests pin the default they measure.
    DATABASE_TIMEOUT="2",
)

import httpx  # noqa: E402
import pytest  # noqa: E402
from tortoise.backends.base.executor import EXECUTOR_CACHE  # noqa: E402

import settings  # noqa: E402
from app import create_app  # noqa: E402
from tests.helpers import free_port, fresh_postgres_database, logged_in_account, migrate  # noqa: E402

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session", params=BACKENDS)
async def database_url(request, tmp_path_factory):
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
        migrate(url)
        yield url
        return
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.skip("TEST_DATABASE_URL is not set: the PostgreSQL run is skipped (.ci/run sets it)")
    async with fresh_postgres_database(base, "authtest") as url:
        yield url


@pytest.fixture(scope="session")
def backend(database_url) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


@pytest.fixture(scope="session")
async def app(database_url):
    # Tortoise caches each model's INSERT/DELETE SQL per connection *name* for the life of the process;
    # this suite switches one name from SQLite to PostgreSQL, so the cache must not outlive a backend.
    EXECUTOR_CACHE.clear()
    application = create_app(settings.tortoise_config(database_url))
    async with application.router.lifespan_context(application):
        yield application
    EXECUTOR_CACHE.clear()


@pytest.fixture
async def client(app):
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def staff(client):
    """A staff member who is not a superuser, logged in."""
    return await logged_in_account(client, is_staff=True)


@pytest.fixture
async def superuser(client):
    return await logged_in_account(client, is_staff=True, is_superuser=True)


class Mailbox:
    """A real SMTP server (aiosmtpd) on a free port, keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list = []
        self.port = free_port()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        import email
        import email.policy

        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        # a new controller each time: a stopped one cannot start again (its loop is closed)
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def to(self, address: str) -> list:
        return [m for m in self.messages if m["To"] == address]

    def text(self, message) -> str:
        return message.get_body(("plain",)).get_content()

    def last_text(self, address: str) -> str:
        """The text part of the latest mail to `address` (failing if none came)."""
        mails = self.to(address)
        assert mails, f"no mail to {address}; mails to: {[m['To'] for m in self.messages]}"
        return self.text(mails[-1])

    @staticmethod
    async def deliver() -> None:
        """What the sender task does after the answer (it is off in these tests: MAIL_SENDER=false)."""
        from apps.mail import outbox

        while await outbox.send_due():
            pass


@pytest.fixture
async def mailbox(app, monkeypatch):
    """A real SMTP server, and an outbox with nothing left to send by earlier tests: what a test
    reads in the mailbox came from it."""
    from apps.mail.models import Mail

    await Mail.filter(sent_at=None, failed_at=None).delete()
    box = Mailbox()
    box.start()
    monkeypatch.setattr(settings, "EMAIL_PORT", box.port)
    yield box
    box.stop()
