"""JSON responses for pydantic models."""

from __future__ import annotations

from pydantic import BaseModel
from starlette.responses import Response


def json_response(body: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A pydantic model as JSON: serialised straight to bytes, no dict and no json.dumps."""
    return Response(
        body.model_dump_json(), status_code=status_code, headers=headers, media_type="application/json"
    )
