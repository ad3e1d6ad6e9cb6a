"""Files the service creates: the SQLite database readable by its owner only, and one revocation
counter per database, whatever the spelling of DATABASE_URL."""

import glob
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
def no_counter_setting(monkeypatch):
    """Servers that find their counter by the database's identity (no REVOCATION_EPOCH_FILE); the files
    they make in shared memory are removed afterwards."""
    pattern = f"/dev/shm/authservice-{os.geteuid()}-*.epoch"  # noqa: S108 (where the service puts it)
    before = set(glob.glob(pattern))
    yield {"REVOCATION_EPOCH_FILE": ""}
    for path in set(glob.glob(pattern)) - before:
        os.unlink(path)


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
