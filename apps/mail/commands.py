"""manage.py commands of the mail app."""

from __future__ import annotations

import argparse

from apps.core.commands import database


async def clearmail(args: argparse.Namespace) -> None:
    """Delete outbox rows sent or given up more than --days ago (their bodies are blank already)."""
    from apps.mail import outbox

    async with database():
        deleted = await outbox.prune(days=args.days)
    print(f"Deleted {deleted} mail(s) sent or given up more than {args.days} days ago.")


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("clearmail", help="delete outbox rows sent or given up long ago")
    p.add_argument("--days", type=int, default=30, help="keep the last DAYS days (default 30)")
    p.set_defaults(run=clearmail, needs_settings=True)
