"""What starts and stops with the process: one registry, iterated by the app's lifespan and manage.py.

A module that owns a resource (the hashing pool, the SQLite reader, the revocation signal, later the
mail sender) registers its `start` and `stop` once, at import; an app's `apps.py` imports them, as
Django's AppConfig.ready() would. `running()` starts them in order of
registration and stops them in reverse, after the database is connected and before it is closed, so
a web worker and a manage.py command get the same process, not two slightly different ones.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import settings

logger = logging.getLogger("apps.core.lifecycle")

Hook = Callable[[], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    start: Hook | None
    stop: Hook | None


_components: dict[str, Component] = {}


def register(name: str, *, start: Hook | None = None, stop: Hook | None = None) -> None:
    """Add a component; registering a name again replaces it (a module reloaded by a test)."""
    _components[name] = Component(name, start, stop)


def components() -> list[Component]:
    return list(_components.values())


async def _call(hook: Hook) -> None:
    result = hook()
    if result is not None:
        await result


CANCEL_GRACE_SECONDS = 1.0


async def cancel(task: asyncio.Task) -> None:
    """Cancel a background task and wait until it has ended.

    Cancelled until it ends, not once: Python 3.11's asyncio.wait_for (which the listeners and
    aiosmtplib await replies with) loses a cancellation that arrives as the awaited reply does, and
    returns the reply instead; a loop around it would go on for ever, and the process on stopping.
    Each cancellation gets a grace second, so the task's own clean-up (closing its connection)
    is not cut short by the next one."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_GRACE_SECONDS)


SLOW_STOP_SECONDS = 5.0


async def _stop(component: Component) -> None:
    # A stop that hangs names itself in the log, so the operator (or a test) whose process will not
    # end reads which part holds it; it is still awaited, as nothing else can end it safely.
    stopping = asyncio.ensure_future(_call(component.stop))
    try:
        done, _ = await asyncio.wait({stopping}, timeout=SLOW_STOP_SECONDS)
    except BaseException:  # the process is stopped harder: so is this part
        stopping.cancel()
        raise
    if not done:
        logger.warning("stopping %s takes more than %.0f s", component.name, SLOW_STOP_SECONDS)
    await stopping


def register_components_of(app: str) -> None:
    """Import `<app>.apps` if the app has one: importing it registers the app's components."""
    if importlib.util.find_spec(f"{app}.apps") is not None:
        importlib.import_module(f"{app}.apps")


@asynccontextmanager
async def running() -> AsyncIterator[None]:
    """Start every registered component of every installed app; stop them all on the way out."""
    for app in settings.INSTALLED_APPS:
        register_components_of(app)
    started: list[Component] = []
    try:
        for component in components():
            if component.start is not None:
                await _call(component.start)
            started.append(component)
        yield
    finally:
        for component in reversed(started):
            if component.stop is not None:
                try:
                    await _stop(component)
                except Exception:  # one failing stop must not keep the others running
                    logger.exception("stopping %s failed", component.name)
