"""Staff API bodies and queries. Unknown fields and parameters are refused, as everywhere."""

from __future__ import annotations

from pydantic import BaseModel, Field

from apps.user.events import TYPES
from apps.user.schemas import EventOut, PageQuery, PatchBody, UserOut


class UserListQuery(PageQuery):
    search: str | None = Field(None, max_length=254, description="Part of the username or email, any case")
    is_active: bool | None = Field(None, description="Only active (true) or inactive (false) accounts")
    is_staff: bool | None = Field(None, description="Only staff (true) or non-staff (false) accounts")


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


class FactorsRemovedOut(BaseModel):
    removed: int  # the authenticator app and each passkey count one


class SessionsEndedOut(BaseModel):
    ended: int = Field(description="How many live sessions were ended")


class EventListQuery(PageQuery):
    user_id: int | None = Field(None, ge=1, le=2**31 - 1, description="Only this user's events")
    type: str | None = Field(None, max_length=40, description=f"Only events of this type: {', '.join(TYPES)}")


class AdminEventOut(EventOut):
    user_id: int
    actor_id: int | None = Field(description="The staff member who made the change, if not the user")


class AdminEventPage(BaseModel):
    count: int
    page: int
    page_size: int
    results: list[AdminEventOut]
