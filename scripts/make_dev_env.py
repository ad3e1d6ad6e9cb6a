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
    lines.append(line)
target.write_text("\n".join(lines) + "\n")
target.chmod(0o600)
print("wrote .env (development settings, random SECRET_KEY)")
