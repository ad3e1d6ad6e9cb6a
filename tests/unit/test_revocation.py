"""The host-local revocation counter: shared by processes, counted exactly, and refusing a file that
someone else could use to pin it."""

import os
import stat
import subprocess
import sys

import pytest

from apps.core.exceptions import ImproperlyConfigured
from apps.user.revocation import LocalEpoch, epoch_path
from tests.helpers import ROOT


def test_the_counter_is_created_0600(tmp_path):
    path = tmp_path / "epoch"
    LocalEpoch(str(path)).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_concurrent_bumps_from_many_processes_all_count(tmp_path):
    path = tmp_path / "epoch"
    code = (
        "import sys; from apps.user.revocation import LocalEpoch\n"
        "e = LocalEpoch(sys.argv[1])\n"
        "for _ in range(500): e.write()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, env=env) for _ in range(4)]
    assert all(p.wait(60) == 0 for p in procs)
    assert LocalEpoch(str(path)).version() == 2000


def test_a_counter_others_can_write_is_refused(tmp_path):
    path = tmp_path / "epoch"
    path.write_bytes(b"\0" * 8)
    path.chmod(0o666)
    with pytest.raises(ImproperlyConfigured, match="writable by others"):
        LocalEpoch(str(path))


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file another user owns needs root (CI runs as root)")
def test_a_counter_another_user_owns_is_refused(tmp_path):
    path = tmp_path / "epoch"
    path.write_bytes(b"\0" * 8)
    path.chmod(0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(ImproperlyConfigured, match="belongs to another user"):
        LocalEpoch(str(path))


def test_a_symlinked_counter_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    LocalEpoch(str(target)).close()
    link = tmp_path / "epoch"
    link.symlink_to(target)
    with pytest.raises(ImproperlyConfigured, match="cannot open"):
        LocalEpoch(str(link))


def test_the_default_path_depends_on_the_database_identity_only(monkeypatch):
    import settings

    monkeypatch.setattr(settings, "REVOCATION_EPOCH_FILE", "")
    a = epoch_path("postgres:7713618177842829425:16384")
    assert a == epoch_path("postgres:7713618177842829425:16384")
    assert a != epoch_path("postgres:7713618177842829425:16385")
