"""Point 9: settings come from the environment and .env, and bad ones stop the service at start-up."""

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT

GOOD_KEY = "k" * 40


def load_settings(**env: str) -> subprocess.CompletedProcess:
    """Import settings.py in a fresh interpreter with exactly these variables (no .env leaks in)."""
    clean = {"PATH": os.environ["PATH"], "DEBUG": "false", "SECRET_KEY": GOOD_KEY, **env}
    code = "import settings, json; print(json.dumps({k: repr(getattr(settings, k)) for k in dir(settings)}))"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True)


def refused(result: subprocess.CompletedProcess, setting: str) -> bool:
    return result.returncode != 0 and "ImproperlyConfigured" in result.stderr and setting in result.stderr


def test_defaults_load():
    result = load_settings()
    assert result.returncode == 0, result.stderr
    assert "'HS256'" in result.stdout and "900" in result.stdout


def test_missing_secret_key_is_refused_outside_debug():
    assert refused(load_settings(SECRET_KEY=""), "SECRET_KEY")


def test_missing_secret_key_is_allowed_in_debug():
    assert load_settings(SECRET_KEY="", DEBUG="true").returncode == 0


@pytest.mark.parametrize("key", ["change-me-to-a-long-random-string", "too-short-key"])
def test_example_or_short_secret_key_is_refused_even_in_debug(key):
    assert refused(load_settings(SECRET_KEY=key, DEBUG="true"), "SECRET_KEY")


def test_short_fallback_key_is_refused():
    assert refused(load_settings(SECRET_KEY_FALLBACKS="short"), "SECRET_KEY_FALLBACKS")


def test_wildcard_cors_origin_is_refused():
    assert refused(load_settings(CORS_ALLOWED_ORIGINS="*"), "CORS_ALLOWED_ORIGINS")
    assert refused(load_settings(CORS_ALLOWED_ORIGINS="localhost:5173"), "CORS_ALLOWED_ORIGINS")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JWT_ALGORITHM", "none"),
        ("JWT_ALGORITHM", "RS512"),
        ("DEBUG", "maybe"),
        ("ACCESS_TOKEN_LIFETIME", "soon"),
        ("PASSWORD_MAX_LENGTH", "32"),
        ("DATABASE_URL", "mysql://x"),
        ("ALLOWED_HOSTS", " , "),
        ("FRONTEND_URL", "localhost:5173"),
        ("EVENT_RETENTION_DAYS", "0"),
        ("SESSION_MAX_LIFETIME", "10"),
        ("LOG_FORMAT", "xml"),
        ("METRICS_ENABLED", "maybe"),
        ("METRICS_ALLOWED_IPS", "prometheus.internal"),
        ("METRICS_ALLOWED_IPS", "10.0.0.0/33"),
    ],
)
def test_invalid_values_are_refused(name, value):
    assert refused(load_settings(**{name: value}), name)


def test_environment_overrides_dotenv(tmp_path):
    # settings.py reads .env next to itself; copy the module to a scratch dir with its own .env
    (tmp_path / "settings.py").write_text((ROOT / "settings.py").read_text())
    (tmp_path / ".env").write_text(
        f"SECRET_KEY={GOOD_KEY}\nJWT_ISSUER=from-dotenv\nJWT_AUDIENCE=from-dotenv\n"
    )
    code = "import settings; print(settings.JWT_ISSUER, settings.JWT_AUDIENCE)"
    env = {"PATH": os.environ["PATH"], "JWT_AUDIENCE": "from-env", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["from-dotenv", "from-env"], out.stderr


def test_env_example_lists_every_setting():
    example = (ROOT / ".env.example").read_text()
    listed = {
        line.split("=", 1)[0] for line in example.splitlines() if "=" in line and not line.startswith("#")
    }
    source = (ROOT / "settings.py").read_text()
    import re

    read = set(re.findall(r'_(?:str|bool|int|float|list|limit|networks)\(\s*"([A-Z_]+)"', source))
    assert read == listed, (read - listed, listed - read)
