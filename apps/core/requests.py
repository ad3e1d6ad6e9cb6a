"""Reading a JSON request body: media type, size limit, UTF-8 and JSON syntax, then a pydantic schema,
in that order; every way a client can get any of them wrong is a 4xx problem, never a 500."""

from __future__ import annotations

import json
import math
from typing import TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request

import settings
from apps.core.errors import MalformedBody, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

Schema = TypeVar("Schema", bound=BaseModel)


JSON_MEDIA_TYPE = "application/json"


def check_json_media_type(request: Request) -> None:
    """Refuse a body that is not declared as UTF-8 JSON, before reading it.

    Only `application/json` is taken, with an optional `charset=utf-8` (any case, quoted or not):
    the forms a browser can send cross-site without a CORS preflight (form encodings, text/plain)
    must never reach a view, and a body declared in another charset would be misread. `+json`
    suffix types are refused too: no client of this API sends them, and `merge-patch+json` would
    promise null-means-delete semantics PATCH here does not have. RFC 8259 section 8.1 makes JSON
    exchanged between systems UTF-8, so no other charset is worth supporting. A content coding
    (gzip...) is not supported either (RFC 9110 section 15.5.16: 415).

    Raises:
        UnsupportedMediaType: 415.
    """
    headers = request.headers
    content_type = headers.get("content-type", "")
    if content_type != JSON_MEDIA_TYPE:  # the common case costs one comparison
        media_type, *params = content_type.split(";")
        if media_type.strip().lower() != JSON_MEDIA_TYPE:
            raise UnsupportedMediaType.for_method(
                request.method, "Send the body as JSON, with Content-Type: application/json."
            )
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
                raise UnsupportedMediaType.for_method(request.method, "Send the body as UTF-8.")
    coding = headers.get("content-encoding")
    if coding and coding.strip().lower() != "identity":
        raise UnsupportedMediaType.for_method(request.method, "Send the body without a content coding.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 overflows to inf, which no field can mean
        raise ValueError(text)
    return value


def _no_constant(name: str) -> None:
    # NaN, Infinity and -Infinity are Python's extension, not JSON (RFC 8259 section 6)
    raise ValueError(name)


def parse_json(body: bytes) -> object:
    """RFC 8259 JSON in UTF-8, nothing more lenient.

    json.loads on bytes would guess UTF-16 or UTF-32 from the first bytes; decoding first pins UTF-8,
    and a UTF-8 byte order mark is refused (json.loads refuses it in a str), as RFC 8259 section 8.1
    allows. ValueError covers bad syntax, bad UTF-8 and integers past Python's digit limit
    (sys.get_int_max_str_digits); RecursionError covers nesting deeper than the interpreter's stack.

    Raises:
        MalformedBody: 400.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedBody("The body is not valid UTF-8.") from None
    if text.startswith("\ufeff"):
        raise MalformedBody("The body starts with a byte order mark; send UTF-8 JSON without one.")
    try:
        return json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise MalformedBody("The body is not valid JSON.") from None


async def read_body(request: Request) -> bytes:
    """The raw body, refused with 413 as soon as it passes MAX_BODY_SIZE (declared or streamed).

    Raises:
        PayloadTooLarge: the body is over the limit.
    """
    limit = settings.MAX_BODY_SIZE
    declared = request.headers.get("content-length")
    # more digits than the limit has is over it, and int() is never asked for 5000 digits (ValueError)
    if declared and declared.isdigit() and (len(declared) > len(str(limit)) or int(declared) > limit):
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
        UnsupportedMediaType: 415, the body is not declared as UTF-8 JSON.
        PayloadTooLarge: 413, the body is over MAX_BODY_SIZE.
        MalformedBody: 400, the body is not UTF-8 JSON or not a JSON object.
        ValidationFailed: 422, naming every bad, missing or unknown field.
    """
    check_json_media_type(request)
    body = await read_body(request)
    data = parse_json(body) if body else None
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
