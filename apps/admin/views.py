"""Staff API, Django admin's user list over HTTP: list, search, filter, inspect, (de)activate,
promote, delete, log out. Every view needs the "staff" scope; who may change whom (staff status and
other staff members need a superuser, the last active superuser stays) is decided in
apps/user/accounts.py, the same rules manage.py follows."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from apps.admin.schemas import (
    AdminEventOut,
    AdminEventPage,
    AdminUserOut,
    AdminUserUpdateIn,
    EventListQuery,
    FactorsRemovedOut,
    SessionsEndedOut,
    UserListQuery,
    UserPage,
)
from apps.core.openapi import operation
from apps.core.permissions import requires_scope
from apps.core.requests import read_json, read_query
from apps.core.responses import json_response
from apps.user import accounts, queries
from apps.user.clients import client_of
from apps.user.models import User
from apps.user.schemas import SessionList, SessionOut

TAGS = ("admin",)


async def _user(request: Request) -> User:
    return await queries.get_user(request.path_params["user_id"])


@operation("List and search users", query=UserListQuery, response=UserPage, errors=(422,), tags=TAGS)
@requires_scope("staff")
async def user_list(request: Request) -> Response:
    """Search matches part of the username or email in any case; oldest accounts first."""
    query = read_query(request, UserListQuery)
    count, users = await queries.list_users(
        search=query.search,
        is_active=query.is_active,
        is_staff=query.is_staff,
        page=query.page,
        page_size=query.page_size,
    )
    page = UserPage(
        count=count,
        page=query.page,
        page_size=query.page_size,
        results=[AdminUserOut.model_validate(u) for u in users],
    )
    return json_response(page)


@operation("One user", response=AdminUserOut, errors=(404,), tags=TAGS)
@requires_scope("staff")
async def user_detail(request: Request) -> Response:
    return json_response(AdminUserOut.model_validate(await _user(request)))


@operation(
    "Activate, deactivate, promote or demote a user",
    body=AdminUserUpdateIn,
    response=AdminUserOut,
    errors=(404, 409),
    tags=TAGS,
)
@requires_scope("staff")
async def user_update(request: Request) -> Response:
    """Deactivation ends every session of the user at once; staff and superuser flags need a superuser."""
    data = await read_json(request, AdminUserUpdateIn)
    user = await accounts.set_flags(
        request.user,
        await _user(request),
        client=client_of(request),
        is_active=data.is_active,
        is_staff=data.is_staff,
        is_superuser=data.is_superuser,
    )
    return json_response(AdminUserOut.model_validate(user))


@operation("Delete a user", status=204, errors=(404, 409), tags=TAGS)
@requires_scope("staff")
async def user_delete(request: Request) -> Response:
    await accounts.delete_user(request.user, await _user(request), client_of(request))
    return Response(status_code=204)


@operation("End every session of a user", response=SessionsEndedOut, errors=(404,), tags=TAGS)
@requires_scope("staff")
async def user_sessions_end(request: Request) -> Response:
    """Their refresh and access tokens are refused from now on, by every worker."""
    ended = await accounts.end_sessions(request.user, await _user(request), client_of(request))
    return json_response(SessionsEndedOut(ended=ended))


@operation("Remove every second factor of a user", response=FactorsRemovedOut, errors=(403, 404), tags=TAGS)
@requires_scope("staff")
async def user_mfa_reset(request: Request) -> Response:
    """For a user who lost their authenticator app, recovery codes and passkeys: the next login needs
    the password alone. The user's history shows the removal, and the staff see who made it."""
    removed = await accounts.reset_second_factors(request.user, await _user(request), client_of(request))
    return json_response(FactorsRemovedOut(removed=removed))


@operation("A user's live sessions, newest first", response=SessionList, errors=(404,), tags=TAGS)
@requires_scope("staff")
async def user_sessions(request: Request) -> Response:
    user = await _user(request)
    rows = await queries.live_sessions(user.id)
    return json_response(SessionList([SessionOut.of(row, current=None) for row in rows]))


@operation(
    "Every account's history, newest first",
    query=EventListQuery,
    response=AdminEventPage,
    errors=(422,),
    tags=TAGS,
)
@requires_scope("staff")
async def event_log(request: Request) -> Response:
    """Filter by `user_id` and `type`; the history of a deleted account stays until EVENT_RETENTION_DAYS."""
    query = read_query(request, EventListQuery)
    count, rows = await queries.events(
        user_id=query.user_id, type=query.type, page=query.page, page_size=query.page_size
    )
    results = [AdminEventOut.model_validate(row) for row in rows]
    return json_response(
        AdminEventPage(count=count, page=query.page, page_size=query.page_size, results=results)
    )
