"""View guards in the spirit of Django's `login_required` and Starlette's `requires`.

Starlette's `requires` answers 403 to an anonymous request; an API must answer 401 with a Bearer
challenge there (the client should log in), and 403 only to a caller who is known but not allowed.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from apps.core.errors import NotAuthenticated, PermissionDenied

View = Callable[[Request], Awaitable[Response]]


def requires_scope(*scopes: str) -> Callable[[View], View]:
    """Allow only callers whose `request.auth.scopes` hold every one of `scopes`.

    No token: 401. A valid token without the scope: 403. `request.auth.scopes` always holds
    "authenticated", plus "staff" for is_staff and "superuser" for is_superuser.
    """

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def guarded(request: Request) -> Response:
            if not request.user.is_authenticated:
                raise NotAuthenticated()
            missing = [scope for scope in scopes if scope not in request.auth.scopes]
            if missing:
                raise PermissionDenied(f"This needs the {', '.join(missing)} permission.")
            return await view(request)

        guarded.required_scopes = scopes  # type: ignore[attr-defined]  (read by the OpenAPI generator)
        return guarded

    return decorate


# Django's name for the common case.
login_required = requires_scope("authenticated")
