"""Write a development .env from .env.example: DEBUG on and a fresh random SECRET_KEY.

Run once by `make run`; .env is git-ignored and never overwritten, so the key (and the tokens it
signed) survive restarts.
"""

import secrets
from pathlib import Path

root = Path(__file__).resolve().parent.parent
target = root / ".env"
if target.exists():
    raise SystemExit(".env exists; not overwriting it")

lines = []
for line in (root / ".env.example").read_text().splitlines():
    if line.startswith("SECRET_KEY="):
        line = f"SECRET_KEY={secrets.token_urlsafe(50)}"
    elif line.startswith("DEBUG="):
        line = "DEBUG=true"
    # `make run` serves the web app itself at http://localhost:8000, and `make dev` runs Vite's dev
    # server on :5173 (its own FRONTEND_URL): mail links and passkeys work with either.
    elif line.startswith("FRONTEND_URL="):
        line = "FRONTEND_URL=http://localhost:8000"
    elif line.startswith("CORS_ALLOWED_ORIGINS="):
        line = "CORS_ALLOWED_ORIGINS=http://localhost:5173"
    elif line.startswith("WEBAUTHN_ORIGINS="):
        line = "WEBAUTHN_ORIGINS=http://localhost:8000,http://localhost:5173"
    lines.append(line)
target.write_text("\n".join(lines) + "\n")
target.chmod(0o600)
print("wrote .env (development settings, random SECRET_KEY)")
