"""Print the service's OpenAPI document (what GET /openapi.json answers) without starting a server.

Run by scripts/gen-api.mjs with the repository's root on sys.path; it needs DEBUG (or API_DOCS) and a
SECRET_KEY in the environment, as the app itself does.
"""

import asyncio
import sys

import app

route = next(r for r in app.app.routes if getattr(r, "path", None) == "/openapi.json")
sys.stdout.write(asyncio.run(route.endpoint(None)).body.decode())
