"""Staff API, Django admin's user list over HTTP: list, search, filter, inspect, (de)activate,
promote, delete, log out. Every view needs the "staff" scope; changing is_superuser needs
"superuser", and so does touching a superuser's account (a staff member cannot lock out, demote or
delete the people above them)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from apps.admin.schemas import AdminUserOut, AdminUserUpdateIn, SessionsEndedOut, UserListQuery, UserPage
from apps.core.errors import PermissionDenied, Problem
from apps.core.openapi import operation
from apps.core.permissions import requires_scope
from apps.core.requests import read_json, read_query
from apps.core.responses import json_response
from apps.user import services
from apps.user.models import User

TAGS = ("admin",)


class UserNotFound(Problem):
    status, code, title = 404, "not_found", "Not found"
    detail = "No user with this id."


MAX_ID = 2**31 - 1  # the id column's range; a larger number names no user (and must not reach the SQL)


async def _user(request: Request) -> User:
    user_id = request.path_params["user_id"]
    user = await User.get_or_none(id=user_id) if user_id <= MAX_ID else None
    if user is None:
        raise UserNotFound()
    return user


async def _target(request: Request) -> User:
    """The user a change is about; a superuser's account only for a superuser."""
    user = await _user(request)
    if user.is_superuser and "superuser" not in request.auth.scopes:
        raise PermissionDenied("Only a superuser may change a superuser's account.")
    return user


@operation("List and search users", query=UserListQuery, response=UserPage, errors=(422,), tags=TAGS)
@requires_scope("staff")
async def user_list(request: Request) -> Response:
    """Search matches part of the username or email in any case; oldest accounts first."""
    query = read_query(request, UserListQuery)
    count, users = await services.list_users(
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
    errors=(404,),
    tags=TAGS,
)
@requires_scope("staff")
async def user_update(request: Request) -> Response:
    """Deactivation ends every session of the user at once; is_superuser needs a superuser."""
    data = await read_json(request, AdminUserUpdateIn)
    if data.is_superuser is not None and "superuser" not in request.auth.scopes:
        raise PermissionDenied("Only a superuser may change is_superuser.")
    user = await services.set_flags(
        await _target(request),
        is_active=data.is_active,
        is_staff=data.is_staff,
        is_superuser=data.is_superuser,
    )
    return json_response(AdminUserOut.model_validate(user))


@operation("Delete a user", status=204, errors=(404,), tags=TAGS)
@requires_scope("staff")
async def user_delete(request: Request) -> Response:
    user = await _target(request)
    await services.delete_user(user.id)
    return Response(status_code=204)


@operation("End every session of a user", response=SessionsEndedOut, errors=(404,), tags=TAGS)
@requires_scope("staff")
async def user_sessions_end(request: Request) -> Response:
    """Their refresh and access tokens are refused from now on, by every worker."""
    user = await _target(request)
    ended = await services.end_user_sessions(user.id, "ended_by_staff")
    return json_response(SessionsEndedOut(ended=ended))
