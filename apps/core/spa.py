"""The single-page app (frontend/, built into FRONTEND_DIST by `make run`), served beside the API.

- `/assets/*`: Vite's content-hashed files, cached for a year and `immutable` (a new build has new
  names); anything else at the top of the build (favicon...) for an hour.
- Every other GET that a browser navigates to (its Accept names text/html) and that no API route
  took: `index.html`, `no-cache` (so a deployment is seen at once), under a strict
  Content-Security-Policy: scripts, styles and connections from this origin only, images also as
  data: URLs (the TOTP QR code), no frames, no plugins, no <base>, forms to this origin. A client
  that asks for JSON still gets the API's 404 problem+json for an unknown path.
- No build (Node missing, or not built yet): `/` says how to build it; the API works regardless.

In production nginx serves the same files itself (deploy/nginx.conf) with the same headers.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount, request_response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from apps.core.errors import NotFound

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)
IMMUTABLE = "public, max-age=31536000, immutable"
SAFETY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",  # the mail links' tokens must not leak through a Referer
    "X-Frame-Options": "DENY",
}
PAGE_HEADERS = {"Cache-Control": "no-cache", **SAFETY_HEADERS}
FILE_HEADERS = {"Cache-Control": "public, max-age=3600", **SAFETY_HEADERS}

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>authservice</title></head>
<body><h1>authservice</h1>
<p>The API is running (<a href="/docs">/docs</a> when API_DOCS is on). The web app is not built:
install Node.js 20 or later and run <code>make run</code> again (it runs <code>npm ci</code> and
<code>npm run build</code> in <code>frontend/</code>), or <code>make dev</code> for Vite's dev server.</p>
</body></html>
"""


class HashedAssets(StaticFiles):
    """Vite's hashed assets: a year, immutable."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = IMMUTABLE
            response.headers.update(SAFETY_HEADERS)
        return response


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def mount(app: Starlette, dist: Path) -> None:
    """Serve the SPA from `dist` for whatever no API route took (the router's default: a path an API
    route has, with another method, stays a 405)."""
    index = dist / "index.html"
    built = index.is_file()
    # looked up by name, never joined with the request's path: nothing outside the build is reachable;
    # no dotfiles, no symlinks
    top_files = (
        {
            f.name: f
            for f in dist.iterdir()
            if f.is_file() and not f.is_symlink() and not f.name.startswith(".")
        }
        if built
        else {}
    )
    top_files.pop("index.html", None)

    async def page(request: Request) -> Response:
        path = request.url.path.lstrip("/")
        if request.method in ("GET", "HEAD") and path in top_files:
            return FileResponse(top_files[path], headers=FILE_HEADERS)
        if request.method not in ("GET", "HEAD") or (not _wants_html(request) and path):
            raise NotFound()  # the API's 404 for a client that is not a browser navigating
        if not built:
            if path or not _wants_html(request):
                raise NotFound()
            return HTMLResponse(NOT_BUILT, headers={"Cache-Control": "no-cache"})
        return FileResponse(index, headers=PAGE_HEADERS)

    if built and (dist / "assets").is_dir():
        app.router.routes.append(Mount("/assets", app=HashedAssets(directory=dist / "assets"), name="assets"))
    app.router.default = request_response(page)
