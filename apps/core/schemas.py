"""Rules every request schema shares, bodies and queries alike."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

NUL_MESSAGE = "Text cannot contain the NUL character (U+0000)."


def refuse_nul(value: object) -> object:
    """Refuse U+0000 anywhere in a value, nested ones included.

    PostgreSQL's text types cannot store NUL (asyncpg raises on it, a 500), SQLite would store it
    and C libraries truncate at it: no field means it, so it is refused before any field rule runs.

    Raises:
        ValueError: the value holds a NUL.
    """
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(NUL_MESSAGE)
    elif isinstance(value, list | tuple):
        for item in value:
            refuse_nul(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_nul(key)
            refuse_nul(item)
    return value


class Query(BaseModel):
    """A query string's parameters: unknown ones refused, no NUL in any value."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def no_nul(cls, value: object) -> object:
        return refuse_nul(value)
