"""Peer: UtilMeta, the user API of its own tutorial ("User Login & RESTful API": Django as the HTTP and
ORM backend, a database-backed session, `auth.User`), mounted at /api as there.

    GET  /api/user        the current user (session cookie `sessionid`; 401 without a live session)
    POST /api/user/login  {"username", "password"}: the tutorial's `user_config.login` (Django's
                          check_password against the PasswordField's hash: Django's default hasher,
                          PBKDF2-SHA256), a session row written, `Set-Cookie: sessionid=...`

Served as the tutorial's service is in production, a WSGI app: `gunicorn utilmeta_app:app`, one
sync worker (its API functions and the Django ORM under them are synchronous; as an ASGI app they
would need rewriting as async functions, which is no longer the tutorial). Environment: UTILMETA_DATABASE (an SQLite file path or
postgres://user@host:port/name), SECRET_KEY.

`python utilmeta_app.py seed N` creates the tables and users bench1..benchN (one hash, shared).
"""

import json
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import django
from utilmeta import UtilMeta
from utilmeta.core import api
from utilmeta.core.orm import Database, DatabaseConnections
from utilmeta.core.server.backends.django import DjangoSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))

PASSWORD = "bench-password-1"


def _database(value: str) -> Database:
    if value.startswith(("postgres://", "postgresql://")):
        url = urlsplit(value)
        return Database(
            name=url.path.lstrip("/"),
            engine="postgresql",
            user=url.username or "",
            password=url.password or "",
            host=url.hostname or "127.0.0.1",
            port=url.port or 5432,
        )
    return Database(name=value, engine="sqlite3")


service = UtilMeta(__name__, name="utilmeta-bench", backend=django, route="/api")
service.use(DjangoSettings(secret_key=os.environ.get("SECRET_KEY", ""), apps=["utilmeta_user"]))
service.use(
    DatabaseConnections(
        {
            "default": _database(
                os.environ.get("UTILMETA_DATABASE", str(Path(__file__).with_suffix(".sqlite3")))
            )
        }
    )
)
service.setup()

from utilmeta_user.api import UserAPI  # noqa: E402


class RootAPI(api.API):
    user: UserAPI


service.mount(RootAPI, route="/api")
app = service.application()


def seed(count: int) -> str:
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command
    from utilmeta_user.models import User

    call_command("migrate", run_syncdb=True, verbosity=0)
    stored = make_password(PASSWORD)  # what the PasswordField stores
    User.objects.bulk_create(
        [User(username=f"bench{i}", password=stored) for i in range(1, count + 1)], batch_size=5000
    )
    return stored


if __name__ == "__main__" and sys.argv[1:2] == ["seed"]:
    print(
        json.dumps(
            {"hasher": "Django make_password (UtilMeta PasswordField)", "hash": seed(int(sys.argv[2]))}
        )
    )
