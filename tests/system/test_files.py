"""Files the service creates: the SQLite database readable by its owner only, and one revocation
counter per database, whatever the spelling of DATABASE_URL."""

import os
import stat

import httpx
import pytest

from tests.helpers import PASSWORD, live_server, migrate, unique


def test_a_new_sqlite_database_is_created_0600(tmp_path):
    path = tmp_path / "new.sqlite3"
    migrate(f"sqlite://{path}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with live_server(f"sqlite://{path}", tmp_path) as base:
        r = httpx.post(
            base + "/user/register",
            json={"username": unique(), "email": f"{unique()}@example.com", "password": PASSWORD},
        )
        assert r.status_code == 201, r.text
        companions = [p for p in (tmp_path / "new.sqlite3-wal", tmp_path / "new.sqlite3-shm") if p.exists()]
        assert companions, "expected SQLite's WAL files while the server runs"
        for companion in companions:
            assert stat.S_IMODE(companion.stat().st_mode) == 0o600, companion


@pytest.fixture
def no_counter_setting(tmp_path):
    """Servers that find their counter by the database's identity (no REVOCATION_EPOCH_FILE), in a
    private runtime directory of the test's own."""
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    return {"REVOCATION_EPOCH_FILE": "", "XDG_RUNTIME_DIR": str(runtime)}


def other_spelling(database_url: str, tmp_path) -> str:
    if database_url.startswith("sqlite"):
        path = database_url.removeprefix("sqlite://")
        link = tmp_path / "same-directory"
        link.symlink_to(os.path.dirname(path))
        return f"sqlite://{link / os.path.basename(path)}"
    assert "127.0.0.1" in database_url, database_url
    return database_url.replace("127.0.0.1", "localhost")


def test_two_spellings_of_one_database_share_one_revocation_counter(
    database_url, tmp_path, no_counter_setting
):
    spelled_otherwise = other_spelling(database_url, tmp_path)
    with (
        live_server(database_url, tmp_path, env=no_counter_setting) as a,
        live_server(spelled_otherwise, tmp_path, env=no_counter_setting) as b,
    ):
        name = unique()
        reg = httpx.post(
            a + "/user/register",
            json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
        ).json()
        auth = {"Authorization": f"Bearer {reg['access_token']}"}
        assert httpx.get(b + "/user/verify", headers=auth).status_code == 204  # cached by b
        assert httpx.post(a + "/user/logout", headers=auth).status_code == 204
        assert httpx.get(b + "/user/verify", headers=auth).status_code == 401
    assert len(list((tmp_path / "run").glob("authservice-*.epoch"))) == 1  # one counter for both
