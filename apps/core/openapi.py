"""OpenAPI 3.1, generated from the routes and the pydantic schemas the views validate with.

A view declares its contract with `@operation(...)`: its request body, query and success schemas,
and the errors it can answer beyond the ones implied by what it reads (a body implies 400, 413, 415
and 422; a permission implies 401, and 403 beyond "authenticated"). `openapi_schema(routes)` turns the
declarations into the document served at /openapi.json; /docs renders it with Swagger UI served
from the installed swagger-ui-bundle package, so it works with no internet.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import Route

REF = "#/components/schemas/{model}"


class Problem(BaseModel):
    """RFC 9457 problem details, the body of every error."""

    type: str
    title: str
    status: int
    detail: str | None = None
    code: str


class FieldError(BaseModel):
    field: str
    message: str


class ValidationProblem(Problem):
    """A 422 (or 409) problem naming each bad field."""

    errors: list[FieldError] | None = None


ERROR_TEXT = {
    400: "Malformed JSON, a body that is not a UTF-8 JSON object, or a bad or repeated Host header",
    401: "No valid credentials or token (WWW-Authenticate: Bearer); on any endpoint, a Bearer token that is "
    "malformed, expired or of an ended session",
    403: "Authenticated, but not allowed",
    404: "No such resource",
    409: "Username or email already taken",
    413: "Body larger than MAX_BODY_SIZE",
    415: "The body is not sent as Content-Type: application/json (optionally charset=utf-8)",
    422: "Invalid input; `errors` names every bad, missing or unknown field",
    429: "Too many attempts (THROTTLE_* settings); see Retry-After and the RateLimit-* headers",
    503: "Database unreachable or password hashing saturated; see Retry-After",
}


Models = type[BaseModel] | tuple[type[BaseModel], ...]

# The header a client chooses the cookie transport with (apps/user/transport.py), declared on every
# route that answers tokens so that a generated client can send it.
TOKEN_TRANSPORT_PARAMETER = {
    "name": "X-Token-Transport",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "enum": ["cookie"]},
    "description": "`cookie`: browsers. The refresh token is set as an HttpOnly cookie "
    "(`__Secure-refresh_token`, Path=/user/refresh-token) and left out of the body; absent: bearer "
    "transport, both tokens in the body.",
}


@dataclass
class Operation:
    """`body` and `response` may be a tuple: any one of those models (`anyOf`)."""

    summary: str
    body: Models | None = None
    body_required: bool = True
    query: type[BaseModel] | None = None
    response: Models | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)
    token_transport: bool = False  # answers tokens, in the bearer or the cookie transport


def _models(declared: Models | None) -> tuple[type[BaseModel], ...]:
    if declared is None:
        return ()
    return declared if isinstance(declared, tuple) else (declared,)


def _schema_of(declared: Models) -> dict:
    refs = [{"$ref": REF.format(model=model.__name__)} for model in _models(declared)]
    return refs[0] if len(refs) == 1 else {"anyOf": refs}


def operation(summary: str, **details: Any) -> Callable:
    """Attach an OpenAPI operation to a view (see the module docstring)."""

    def decorate(view: Callable) -> Callable:
        view.openapi = Operation(summary, **details)  # type: ignore[attr-defined]
        return view

    return decorate


def _problem(status: int) -> dict:
    model = "ValidationProblem" if status in (409, 422) else "Problem"
    return {
        "description": ERROR_TEXT.get(status, "Error"),
        "content": {"application/problem+json": {"schema": {"$ref": REF.format(model=model)}}},
    }


def openapi_schema(routes: list, *, title: str, version: str) -> dict:
    models: list[tuple[type[BaseModel], str]] = [
        (Problem, "serialization"),
        (ValidationProblem, "serialization"),
    ]
    found: list[tuple[Route, str, Operation]] = []
    for route in routes:
        view = getattr(route, "endpoint", None)
        spec = getattr(view, "openapi", None)
        if not isinstance(route, Route) or spec is None:
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            found.append((route, method, spec))
            models.extend((model, "validation") for model in _models(spec.body))
            models.extend((model, "serialization") for model in _models(spec.response))
    _, definitions = models_json_schema(list(dict.fromkeys(models)), ref_template=REF)
    # An optional field of a request body may be left out; `"default": null` would make generators
    # (openapi-typescript) type it as required, so that `{"email", "password"}` fails to compile.
    for model, mode in models:
        if mode == "validation":
            for field in definitions.get("$defs", {}).get(model.__name__, {}).get("properties", {}).values():
                if "default" in field and field["default"] is None:
                    del field["default"]

    paths: dict[str, dict] = {}
    for route, method, spec in found:
        view = route.endpoint
        scopes = getattr(view, "required_scopes", ())
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "integer" if conv.regex == "[0-9]+" else "string"},
            }
            for name, conv in route.param_convertors.items()
        ]
        if spec.query:
            schema = spec.query.model_json_schema(ref_template=REF)
            for name, prop in schema["properties"].items():
                parameters.append(
                    {
                        "name": name,
                        "in": "query",
                        "required": name in schema.get("required", []),
                        "schema": prop,
                        "description": prop.get("description", ""),
                    }
                )
        responses: dict[str, dict] = {}
        if spec.token_transport:
            parameters.append(TOKEN_TRANSPORT_PARAMETER)
        if spec.response:
            content = {"application/json": {"schema": _schema_of(spec.response)}}
            responses[str(spec.status)] = {"description": spec.summary, "content": content}
        else:
            responses[str(spec.status)] = {"description": spec.summary}
        headers = dict(spec.headers)
        if spec.token_transport:
            headers["Set-Cookie"] = "With `X-Token-Transport: cookie`: the refresh token (HttpOnly)"
        if headers:
            responses[str(spec.status)]["headers"] = {
                name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
            }
        # 401 everywhere: a broken Bearer token is refused before any view runs, public ones included
        errors = set(spec.errors) | {401}
        if spec.token_transport:
            errors.add(403)  # csrf_failed: a cookie-transport request without the header or from elsewhere
        if spec.body:
            errors |= {400, 413, 415, 422}
        if set(scopes) - {"authenticated"}:
            errors.add(403)
        for status in sorted(errors):
            responses[str(status)] = _problem(status)
        entry: dict[str, Any] = {
            "operationId": view.__name__,
            "summary": spec.summary,
            "tags": list(spec.tags),
            "responses": responses,
        }
        doc = (view.__doc__ or "").strip()
        if doc:
            entry["description"] = re.sub(r"\s+", " ", doc)
        if parameters:
            entry["parameters"] = parameters
        if spec.body:
            entry["requestBody"] = {
                "required": spec.body_required,
                "content": {"application/json": {"schema": _schema_of(spec.body)}},
            }
        if scopes:
            entry["security"] = [{"bearerAuth": []}]
        path = re.sub(r"{(\w+)(:\w+)?}", r"{\1}", route.path)
        paths.setdefault(path, {})[method.lower()] = entry

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/static/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{url: "/openapi.json", dom_id: "#swagger-ui", persistAuthorization: false}});
  </script>
</body>
</html>
"""


def docs_routes(api_routes: list, *, title: str, version: str) -> list:
    """/openapi.json and /docs (Swagger UI from the installed openapi-ui-bundles package, no CDN)."""
    from openapi_ui_bundles import swagger_ui
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    document = openapi_schema(api_routes, title=title, version=version)

    async def openapi_json(request):
        return JSONResponse(document)

    async def docs(request):
        return HTMLResponse(DOCS_PAGE.format(title=title))

    return [
        Route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False),
        Route("/docs", docs, methods=["GET"], include_in_schema=False),
        Mount("/docs/static", StaticFiles(directory=swagger_ui.static_path), name="docs-static"),
    ]
