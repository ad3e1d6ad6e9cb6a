"""Point 3: the schema comes from Tortoise's own migrations, and they match the models."""

import os
import subprocess
import sys

from tortoise import connections

from tests.helpers import ROOT


def manage(*args: str, database_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


async def test_migrations_were_applied_by_manage_py(app, backend):
    # the harness built this database with `manage.py migrate`, never generate_schemas
    _, rows = await connections.get("default").execute_query("SELECT app, name FROM tortoise_migrations")
    assert {(row["app"], row["name"]) for row in rows} == {
        ("user", "0001_initial"),
        ("user", "0002_widen_username_key"),
        ("user", "0003_username_skeleton"),
        ("user", "0004_event"),
        ("user", "0005_email_verification"),
        ("user", "0006_second_factors"),
        ("user", "0007_browser_refresh_successor"),
        ("mail", "0001_initial"),
        ("mail", "0002_deferred_composition"),
    }


async def test_migrate_again_is_a_no_op(database_url):
    result = manage("migrate", database_url=database_url)
    assert result.returncode == 0, result.stderr
    assert "No migrations to apply" in result.stdout


def test_models_have_no_unmigrated_changes(tmp_path):
    result = manage("makemigrations", "--check", database_url=f"sqlite://{tmp_path / 'check.sqlite3'}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes detected" in result.stdout


def test_showmigrations_lists_applied(tmp_path):
    url = f"sqlite://{tmp_path / 'show.sqlite3'}"
    assert manage("migrate", database_url=url).returncode == 0
    result = manage("showmigrations", database_url=url)
    assert "user 0001_initial" in result.stdout


def test_no_generate_schemas_outside_tests():
    sources = [
        p
        for p in ROOT.rglob("*.py")
        if "tests" not in p.parts and not any(part.startswith(".") for part in p.relative_to(ROOT).parts)
    ]
    offenders = [str(p) for p in sources if "generate_schemas" in p.read_text()]
    assert offenders == []
