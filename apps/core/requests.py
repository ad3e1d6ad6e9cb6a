"""Reading a JSON request body: size limit, JSON syntax, then a pydantic schema, in that order."""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request

import settings
from apps.core.errors import MalformedBody, PayloadTooLarge, ValidationFailed

Schema = TypeVar("Schema", bound=BaseModel)


async def read_body(request: Request) -> bytes:
    """The raw body, refused with 413 as soon as it passes MAX_BODY_SIZE (declared or streamed).

    Raises:
        PayloadTooLarge: the body is over the limit.
    """
    limit = settings.MAX_BODY_SIZE
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The body is larger than {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The body is larger than {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def validation_errors(exc: PydanticValidationError) -> list[dict[str, str]]:
    """One {"field", "message"} per bad field, in pydantic's order."""
    errors = []
    for error in exc.errors(include_url=False, include_input=False):
        # DRF's name for an error about the body as a whole rather than one field
        field = ".".join(str(part) for part in error["loc"]) or "non_field_errors"
        message = error["msg"].removeprefix("Value error, ")
        errors.append({"field": field, "message": message})
    return errors


async def read_json(request: Request, schema: type[Schema]) -> Schema:
    """Parse and validate the JSON object in the request body.

    Raises:
        PayloadTooLarge: 413, the body is over MAX_BODY_SIZE.
        MalformedBody: 400, the body is not JSON or not a JSON object.
        ValidationFailed: 422, naming every bad, missing or unknown field.
    """
    body = await read_body(request)
    try:
        data = json.loads(body) if body else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MalformedBody("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise MalformedBody("The body must be a JSON object.")
    try:
        return schema.model_validate(data)
    except PydanticValidationError as exc:
        raise ValidationFailed(errors=validation_errors(exc)) from None


def read_query(request: Request, schema: type[Schema]) -> Schema:
    """Validate the query string (a repeated parameter counts once, the last value).

    Raises:
        ValidationFailed: 422, naming every bad or unknown parameter.
    """
    try:
        return schema.model_validate(dict(request.query_params))
    except PydanticValidationError as exc:
        raise ValidationFailed(errors=validation_errors(exc)) from None
