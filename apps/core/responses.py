"""JSON responses for pydantic models."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.responses import Response

from apps.core.errors import NO_STORE


def json_response(body: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A pydantic model as JSON: serialised straight to bytes, no dict and no json.dumps.

    `Cache-Control: no-store` by default: everything this API answers in JSON is account data or
    tokens, which neither a shared nor a browser cache may keep (RFC 9111 section 5.2.2.5). A caller
    that means otherwise passes its own Cache-Control.
    """
    if headers is None:
        headers = NO_STORE
    elif not any(name.lower() == "cache-control" for name in headers):
        headers = {**NO_STORE, **headers}
    return Response(
        body.model_dump_json(), status_code=status_code, headers=headers, media_type="application/json"
    )
