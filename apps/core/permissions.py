"""View guards in the spirit of Django's `login_required` and Starlette's `requires`."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from apps.core.errors import NotAuthenticated

View = Callable[[Request], Awaitable[Response]]


def login_required(view: View) -> View:
    """Refuse anonymous requests with 401 and a Bearer challenge (Starlette's `requires` answers 403)."""

    @functools.wraps(view)
    async def guarded(request: Request) -> Response:
        if not request.user.is_authenticated:
            raise NotAuthenticated()
        return await view(request)

    return guarded
