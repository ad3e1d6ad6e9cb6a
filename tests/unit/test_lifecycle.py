"""The registry of what starts and stops: importing the installed apps is enough to fill it."""

import asyncio
import os
import subprocess
import sys

from apps.core import lifecycle
from tests.helpers import ROOT


def test_the_installed_apps_register_their_components_when_imported():
    # A fresh interpreter, as manage.py is: nothing imported but settings and the registry.
    code = (
        "import settings\n"
        "from apps.core import lifecycle\n"
        "for app in settings.INSTALLED_APPS: lifecycle.register_components_of(app)\n"
        "print(sorted(c.name for c in lifecycle.components()))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    names = result.stdout.strip()
    assert "'revocation'" in names and "'hashing pool'" in names, names


async def _replies_for_ever(replies: asyncio.Queue) -> None:
    """A background loop awaiting each reply the way the revocation listeners and aiosmtplib do."""
    while True:
        await asyncio.wait_for(await replies.get(), 10)


async def _a_reply_arrives_as_the_cancel_does(task: asyncio.Task, replies: asyncio.Queue) -> None:
    reply = asyncio.get_running_loop().create_future()
    await replies.put(reply)
    await asyncio.sleep(0)  # the loop is awaiting `reply` now
    reply.set_result(None)  # ...which arrives: the loop's wake-up is scheduled, not yet run


async def test_a_stopping_task_ends_even_when_python_loses_its_cancellation():
    # Python 3.11's wait_for returns a reply that arrived with the cancellation, and drops the
    # cancellation: cancelled once, this loop would never end (the process would not stop).
    replies: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(_replies_for_ever(replies))
    await _a_reply_arrives_as_the_cancel_does(task, replies)
    await asyncio.wait_for(lifecycle.cancel(task), 5)
    assert task.cancelled()


async def test_cancelled_once_the_same_loop_goes_on():
    """The counter-check: the loss is real on this Python, so the test above tests something."""
    replies: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(_replies_for_ever(replies))
    await _a_reply_arrives_as_the_cancel_does(task, replies)
    task.cancel()
    await asyncio.sleep(0.05)
    lost = not task.done()
    await lifecycle.cancel(task)
    if sys.version_info < (3, 12):
        assert lost, "the cancellation was not lost: the race above is not reproduced"


async def test_a_stop_that_hangs_names_itself_in_the_log(monkeypatch, caplog):
    monkeypatch.setattr(lifecycle, "SLOW_STOP_SECONDS", 0.05)
    released = asyncio.Event()
    slow = lifecycle.Component("slow part", None, released.wait)
    stopping = asyncio.create_task(lifecycle._stop(slow))
    await asyncio.sleep(0.2)
    assert not stopping.done()  # still awaited: nothing else can end it safely
    assert "stopping slow part takes more than" in caplog.text
    released.set()
    await asyncio.wait_for(stopping, 2)
