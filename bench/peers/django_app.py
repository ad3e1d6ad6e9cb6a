"""Peer: Django + Django REST framework + djangorestframework-simplejwt, a minimal project in one module
(settings, view, URLs, WSGI and ASGI entry points).

    GET  /me     the current user: DRF APIView, JWTAuthentication + IsAuthenticated, a ModelSerializer
                 of django.contrib.auth's User (one query per request: simplejwt loads the user)
    POST /login  simplejwt's TokenObtainPairView: {"username", "password"} -> {"access", "refresh"}

Served as `gunicorn django_app:application` (sync worker) or `uvicorn django_app:asgi_application`.
Middleware: SecurityMiddleware and CommonMiddleware only (an API authenticated by JWT needs no
sessions, CSRF or messages). Database connections as Django's documentation advises: persistent
(CONN_MAX_AGE) under gunicorn; under ASGI (DJANGO_SERVER=asgi) not persistent, with Django's psycopg
connection pool on PostgreSQL.

Environment: DJANGO_DATABASE (a path to an SQLite file, or postgres://user@host:port/name),
SECRET_KEY, and DJANGO_HASHER: unset for Django's default PASSWORD_HASHERS (PBKDF2-SHA256 at the
release's iteration count), "argon2" for Argon2PasswordHasher at ARGON2_TIME_COST, ARGON2_MEMORY_COST
(KiB) and ARGON2_PARALLELISM (run.py passes the service's own parameters: a like-for-like login row).

`python django_app.py seed N` migrates and creates users bench1..benchN hashed with the default
hasher and argon1..argonN with the argon2 one (one hash each, shared), printing both hashes.
"""

import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from django.contrib.auth.hashers import Argon2PasswordHasher

PASSWORD = "bench-password-1"


class ServiceArgon2PasswordHasher(Argon2PasswordHasher):
    """Django's argon2 hasher (argon2id) at the parameters run.py reads from the service's settings."""

    time_cost = int(os.environ.get("ARGON2_TIME_COST", Argon2PasswordHasher.time_cost))
    memory_cost = int(os.environ.get("ARGON2_MEMORY_COST", Argon2PasswordHasher.memory_cost))
    parallelism = int(os.environ.get("ARGON2_PARALLELISM", Argon2PasswordHasher.parallelism))


def _database(value: str) -> dict:
    # Persistent connections under gunicorn (a sync worker: one thread, one connection). Under ASGI each
    # request's sync code may run on a thread of its own, and a persistent connection per thread leaks
    # (Django's documentation: disable them under ASGI); there PostgreSQL gets Django's psycopg pool.
    asgi = os.environ.get("DJANGO_SERVER") == "asgi"
    if value.startswith(("postgres://", "postgresql://")):
        url = urlsplit(value)
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": url.path.lstrip("/"),
            "USER": url.username or "",
            "PASSWORD": url.password or "",
            "HOST": url.hostname or "",
            "PORT": str(url.port or ""),
            "CONN_MAX_AGE": 0 if asgi else 600,
            "OPTIONS": {"pool": True} if asgi else {},
        }
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": value, "CONN_MAX_AGE": 0 if asgi else 600}


# --- settings -------------------------------------------------------------------------------------

DEBUG = False
SECRET_KEY = os.environ.get("SECRET_KEY", "")
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = __name__
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"]
MIDDLEWARE = ["django.middleware.security.SecurityMiddleware", "django.middleware.common.CommonMiddleware"]
DATABASES = {
    "default": _database(os.environ.get("DJANGO_DATABASE", str(Path(__file__).with_suffix(".sqlite3"))))
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
if os.environ.get("DJANGO_HASHER") == "argon2":
    PASSWORD_HASHERS = [f"{__name__}.ServiceArgon2PasswordHasher"]
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework_simplejwt.authentication.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
SIMPLE_JWT = {"SIGNING_KEY": SECRET_KEY, "ACCESS_TOKEN_LIFETIME": timedelta(hours=1)}
LOGGING = {"version": 1, "disable_existing_loggers": False}

os.environ.setdefault("DJANGO_SETTINGS_MODULE", __name__ if __name__ != "__main__" else "django_app")
if __name__ == "__main__":
    sys.modules.setdefault("django_app", sys.modules[__name__])

import django  # noqa: E402

django.setup()

# --- the API --------------------------------------------------------------------------------------

from django.contrib.auth import get_user_model  # noqa: E402
from django.urls import path  # noqa: E402
from rest_framework import serializers  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402
from rest_framework_simplejwt.views import TokenObtainPairView  # noqa: E402

User = get_user_model()


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "first_name",
            "last_name",
            "is_active",
            "date_joined",
            "last_login",
        ]


class Me(APIView):
    def get(self, request):
        return Response(UserSerializer(request.user).data)


urlpatterns = [path("me", Me.as_view()), path("login", TokenObtainPairView.as_view())]


def seed(count: int) -> dict:
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    default_hash = make_password(PASSWORD)
    argon2_hash = ServiceArgon2PasswordHasher().encode(PASSWORD, ServiceArgon2PasswordHasher().salt())
    for prefix, stored in (("bench", default_hash), ("argon", argon2_hash)):
        User.objects.bulk_create(
            [
                User(username=f"{prefix}{i}", email=f"{prefix}{i}@example.com", password=stored)
                for i in range(1, count + 1)
            ],
            batch_size=5000,
        )
    return {"default": default_hash, "argon2": argon2_hash}


from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
asgi_application = get_asgi_application()

if __name__ == "__main__" and sys.argv[1:2] == ["seed"]:
    print(json.dumps(seed(int(sys.argv[2]))))
