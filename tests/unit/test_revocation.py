"""The host-local revocation file: shared by processes, counted exactly, delivering exactly the sessions
and accounts named (everything only when a reader fell a whole ring behind or met an entry being
rewritten), and refusing a file that someone else could use to pin it. And the cross-host message
format."""

import asyncio
import os
import stat
import subprocess
import sys
import uuid

import pytest

from apps.core.exceptions import ImproperlyConfigured
from apps.user import revocation
from apps.user.revocation import RING_ENTRIES, LocalEpoch, epoch_path
from tests.helpers import ROOT


def test_the_counter_is_created_0600(tmp_path):
    path = tmp_path / "epoch"
    LocalEpoch(str(path)).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


class Heard:
    """A listener that records what it is told."""

    def __init__(self) -> None:
        self.sessions: list[str] = []
        self.users: list[int] = []
        self.profiles: list[int] = []
        self.everything = 0

    def forget(self, sessions, users, profiles=()) -> None:
        self.sessions += sessions
        self.users += users
        self.profiles += profiles

    def forget_all(self) -> None:
        self.everything += 1


def test_concurrent_writers_in_many_processes_all_reach_a_reader(tmp_path):
    path = tmp_path / "epoch"
    reader = LocalEpoch(str(path))
    code = (
        "import sys, uuid; from apps.user.revocation import LocalEpoch\n"
        "e = LocalEpoch(sys.argv[1])\n"
        "for _ in range(250): e.write(sessions=[str(uuid.uuid4())], users=[int(sys.argv[2])])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path), str(n)], cwd=ROOT, env=env) for n in range(4)
    ]
    assert all(p.wait(60) == 0 for p in procs)
    assert reader.version() == 2000  # 4 processes x 250 revocations x (a session + an account)
    heard = Heard()
    assert reader.catch_up(heard)
    assert heard.everything == 0
    assert len(set(heard.sessions)) == 1000 and sorted(set(heard.users)) == [0, 1, 2, 3]
    heard.sessions.clear()
    reader.catch_up(heard)  # nothing new: nothing delivered twice
    assert heard.sessions == []


def test_a_reader_hears_exactly_what_was_revoked(tmp_path):
    writer, reader = LocalEpoch(str(tmp_path / "epoch")), LocalEpoch(str(tmp_path / "epoch"))
    session = str(uuid.uuid4())
    writer.write(sessions=[session])
    writer.write(users=[42])
    heard = Heard()
    reader.catch_up(heard)
    assert (heard.sessions, heard.users, heard.everything) == ([session], [42], 0)


def test_a_reader_hears_which_user_objects_changed(tmp_path):
    writer, reader, heard = LocalEpoch(str(tmp_path / "e")), LocalEpoch(str(tmp_path / "e")), Heard()
    session = str(uuid.uuid4())
    writer.write(profiles=[7])
    writer.write([session], [8], [9, 10])
    reader.catch_up(heard)
    assert (heard.sessions, heard.users, heard.profiles, heard.everything) == ([session], [8], [7, 9, 10], 0)


def test_naming_nothing_means_everything(tmp_path):
    writer, reader = LocalEpoch(str(tmp_path / "epoch")), LocalEpoch(str(tmp_path / "epoch"))
    writer.write()
    heard = Heard()
    reader.catch_up(heard)
    assert heard.everything == 1


def test_a_reader_a_whole_ring_behind_forgets_everything(tmp_path):
    writer, reader = LocalEpoch(str(tmp_path / "epoch")), LocalEpoch(str(tmp_path / "epoch"))
    for _ in range(RING_ENTRIES + 1):
        writer.write(users=[1])
    heard = Heard()
    reader.catch_up(heard)
    assert heard.everything == 1 and heard.users == []


def test_an_entry_overwritten_while_unread_counts_as_everything(tmp_path):
    path = tmp_path / "epoch"
    writer, reader = LocalEpoch(str(path)), LocalEpoch(str(path))
    writer.write(users=[1])
    # what a writer a whole ring ahead leaves in that slot: another sequence number
    writer._map[8 + (1 % RING_ENTRIES) * 32 : 8 + (1 % RING_ENTRIES) * 32 + 8] = (1 + RING_ENTRIES).to_bytes(
        8, "little"
    )
    heard = Heard()
    reader.catch_up(heard)
    assert heard.everything == 1 and heard.users == []


def test_a_counter_file_of_the_earlier_version_is_taken_over(tmp_path):
    path = tmp_path / "epoch"
    path.write_bytes((17).to_bytes(8, "little"))  # the 8-byte counter of the previous release
    path.chmod(0o600)
    writer, reader = LocalEpoch(str(path)), LocalEpoch(str(path))
    assert writer.version() == 17
    writer.write(users=[5])
    heard = Heard()
    reader.catch_up(heard)
    assert heard.users == [5] and heard.everything == 0


def test_cross_host_messages_carry_sessions_and_accounts_and_fail_safe():
    session = str(uuid.uuid4())
    heard = Heard()
    revocation.deliver(revocation.encode([session], [3]), heard)
    assert (heard.sessions, heard.users, heard.everything) == ([session], [3], 0)
    revocation.deliver(revocation.encode([], [], [5, 4]), heard)  # user objects changed, nothing else
    assert (heard.sessions, heard.users, heard.profiles, heard.everything) == ([session], [3], [4, 5], 0)
    revocation.deliver('{"p": ["x"]}', heard)
    assert heard.everything == 1
    heard.everything = 0
    for unreadable in (
        "",
        "not json",
        '{"s": ["not-a-uuid"]}',
        '{"u": ["x"]}',
        "[]",
        revocation.encode([], []),
    ):
        revocation.deliver(unreadable, heard)
    assert heard.everything == 6
    # more than a NOTIFY can carry: everything
    assert revocation.encode([str(uuid.uuid4()) for _ in range(300)], []) == '{"all":true}'


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


class _Heartbeats(revocation.CrossHostListener):
    """A cross-host listener whose connection answers each heartbeat when the test says so."""

    name = "heartbeats"

    def __init__(self) -> None:
        super().__init__()
        self.replies: asyncio.Queue = asyncio.Queue()

    async def _session(self) -> None:
        self._in_sync()
        while True:  # as PostgresNotify's heartbeat awaits each SELECT 1
            await asyncio.wait_for(await self.replies.get(), 10)


async def test_a_listener_stops_when_its_heartbeat_reply_arrives_with_the_stop():
    # Python 3.11's wait_for keeps the reply and drops a cancellation that arrives with it: stopped
    # with one cancel, the listener went on for ever and the process never ended.
    listener = _Heartbeats()
    await listener.start(wait=5)
    assert listener.synced
    reply = asyncio.get_running_loop().create_future()
    await listener.replies.put(reply)
    await asyncio.sleep(0)
    reply.set_result(None)
    stopping = asyncio.create_task(listener.stop())
    done, _ = await asyncio.wait({stopping}, timeout=2)
    assert done, "the listener did not stop"
    assert listener._task is None
