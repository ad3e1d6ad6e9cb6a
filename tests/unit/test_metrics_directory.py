"""PROMETHEUS_MULTIPROC_DIR's housekeeping (apps/core/metrics.claim_directory): the first worker of a
server empties what an earlier run left; a worker that joins live siblings keeps the server's totals
and drops only the gauges of workers that have died."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from apps.core.metrics import _start_time, claim_directory


@pytest.fixture
def sibling():
    """A live process standing for another worker of the same server."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def files_of(directory, pid: int, *, marker: str | None = None) -> list:
    """The files a worker leaves: counters, histograms, a live gauge, a gauge kept after it exits."""
    names = [f"counter_{pid}.db", f"histogram_{pid}.db", f"gauge_livesum_{pid}.db", f"gauge_all_{pid}.db"]
    for name in names:
        (directory / name).write_bytes(b"")
    if marker is not None:
        (directory / f"worker_{pid}.alive").write_text(marker)
    return names


def names(directory) -> set[str]:
    return {path.name for path in directory.iterdir() if path.name != ".lock"}


def test_the_first_worker_of_a_server_empties_what_an_earlier_run_left(tmp_path, dead_pid):
    files_of(tmp_path, dead_pid, marker="12345")
    claim_directory(tmp_path)
    assert names(tmp_path) == {f"worker_{os.getpid()}.alive"}
    assert (tmp_path / f"worker_{os.getpid()}.alive").read_text() == _start_time(os.getpid())


def test_the_directory_is_made_private_when_missing(tmp_path):
    directory = tmp_path / "metrics" / "server-a"
    claim_directory(directory)
    assert directory.is_dir() and (directory.stat().st_mode & 0o077) == 0


def test_joining_live_siblings_keeps_the_totals_and_drops_dead_workers_gauges(tmp_path, sibling, dead_pid):
    alive = files_of(tmp_path, sibling, marker=_start_time(sibling))
    dead = files_of(tmp_path, dead_pid, marker=_start_time(os.getpid()))  # its start time is of no use now
    claim_directory(tmp_path)
    left = names(tmp_path)
    assert set(alive) | {f"worker_{sibling}.alive"} <= left  # the sibling is untouched
    # the dead worker's counters and histograms stay in the server's totals; its live gauge goes
    assert {f"counter_{dead_pid}.db", f"histogram_{dead_pid}.db", f"gauge_all_{dead_pid}.db"} <= left
    assert f"gauge_livesum_{dead_pid}.db" not in left and f"worker_{dead_pid}.alive" not in left
    assert f"worker_{os.getpid()}.alive" in left
    assert set(dead) - left == {f"gauge_livesum_{dead_pid}.db"}


def test_a_reused_pid_is_not_taken_for_a_live_worker(tmp_path, sibling):
    # the marker names a live process, but one that started after the worker that wrote it
    files_of(tmp_path, sibling, marker="1")
    claim_directory(tmp_path)
    assert names(tmp_path) == {f"worker_{os.getpid()}.alive"}


def test_start_times_tell_processes_apart(sibling, dead_pid):
    assert _start_time(sibling) not in (None, "")
    assert _start_time(sibling) == _start_time(sibling)
    assert _start_time(dead_pid) is None
