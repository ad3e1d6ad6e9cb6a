"""Staff API bodies and queries. Unknown fields and parameters are refused, as everywhere."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from apps.core.schemas import Query
from apps.user.events import TYPES
from apps.user.schemas import EventOut, PageQuery, PatchBody, UserOut

MAX_PAGE_SIZE = 200
# There are never more users than ids (a 32-bit column), so no later page can hold anyone; the bound
# keeps (page - 1) * page_size far inside a 64-bit OFFSET on both databases, and inside a JS number.
MAX_PAGE = 2**31 - 1


class UserListQuery(Query):
    search: str | None = Field(None, max_length=254, description="Part of the username or email, any case")
    is_active: bool | None = Field(None, description="Only active (true) or inactive (false) accounts")
    is_staff: bool | None = Field(None, description="Only staff (true) or non-staff (false) accounts")
    page: int = Field(1, ge=1, le=MAX_PAGE, description="1-based page number")
    page_size: int = Field(50, ge=1, le=MAX_PAGE_SIZE, description=f"Users per page, at most {MAX_PAGE_SIZE}")


class AdminUserOut(UserOut):
    """The user as staff see it: what the user sees, and is_superuser."""

    is_superuser: bool


class UserPage(BaseModel):
    count: int
    page: int
    page_size: int
    results: list[AdminUserOut]


class AdminUserUpdateIn(PatchBody):
    is_active: bool | None = None
    is_staff: bool | None = None
    is_superuser: bool | None = Field(None, description="Only a superuser may change it")


class SessionsEndedOut(BaseModel):
    ended: int = Field(description="How many live sessions were ended")


class EventListQuery(PageQuery):
    user_id: int | None = Field(None, ge=1, le=2**31 - 1, description="Only this user's events")
    type: Literal[TYPES] | None = Field(None, description="Only events of this type")  # type: ignore[valid-type]


class AdminEventOut(EventOut):
    user_id: int


class AdminEventPage(BaseModel):
    count: int
    page: int
    page_size: int
    results: list[AdminEventOut]
