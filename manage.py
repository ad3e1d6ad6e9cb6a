#!/usr/bin/env python
"""Django-style command line: `python manage.py <command> [options]`.

migrate           apply Tortoise migrations to DATABASE_URL
makemigrations    write new migrations for model changes (apps/<app>/migrations/)
showmigrations    list the migrations applied to DATABASE_URL
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from tortoise.cli import cli as tortoise_cli
from tortoise.cli.utils import CLIError


def _context() -> tortoise_cli.CLIContext:
    # Tortoise's own migration engine, fed by settings.TORTOISE_ORM (DATABASE_URL).
    return tortoise_cli.CLIContext(config="settings.TORTOISE_ORM", config_file=None)


async def _migrate(args: argparse.Namespace) -> None:
    await tortoise_cli.migrate(
        _context(), args.app_label, args.migration_name, fake=args.fake, dry_run=args.plan
    )


async def _makemigrations(args: argparse.Namespace) -> None:
    if args.check:
        await _check_migrations(args.app_label)
        return
    await tortoise_cli.makemigrations(_context(), tuple(args.app_label), empty=args.empty, name=args.name)


async def _check_migrations(app_labels: list[str]) -> None:
    """Django's `makemigrations --check`: fail if the models have changes no migration records."""
    from tortoise.context import TortoiseContext
    from tortoise.migrations.autodetector import MigrationAutodetector

    import settings

    apps = {
        label: cfg
        for label, cfg in settings.TORTOISE_ORM["apps"].items()
        if not app_labels or label in app_labels
    }
    async with TortoiseContext() as ctx:
        await ctx.init(config=settings.TORTOISE_ORM)
        writers = await MigrationAutodetector(ctx.apps, apps).changes()
    if writers:
        names = ", ".join(f"{w.app_label}.{w.name}" for w in writers)
        raise CLIError(f"models have changes without a migration (would create {names}); run makemigrations")
    print("No changes detected")


async def _showmigrations(args: argparse.Namespace) -> None:
    await tortoise_cli.history(_context(), tuple(args.app_label))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="manage.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)

    migrate = commands.add_parser("migrate", help="apply migrations")
    migrate.add_argument("app_label", nargs="?", help="only this app")
    migrate.add_argument(
        "migration_name", nargs="?", help="migrate to this migration (forwards or backwards)"
    )
    migrate.add_argument("--fake", action="store_true", help="mark as applied without running them")
    migrate.add_argument("--plan", action="store_true", help="show what would run, change nothing")
    migrate.set_defaults(run=_migrate)

    make = commands.add_parser("makemigrations", help="write migrations for model changes")
    make.add_argument("app_label", nargs="*", help="only these apps")
    make.add_argument("--empty", action="store_true", help="an empty migration to fill by hand")
    make.add_argument("-n", "--name", help="name of the migration")
    make.add_argument(
        "--check", action="store_true", help="exit non-zero if a migration is missing; write nothing"
    )
    make.set_defaults(run=_makemigrations)

    show = commands.add_parser("showmigrations", help="list applied migrations")
    show.add_argument("app_label", nargs="*", help="only these apps")
    show.set_defaults(run=_showmigrations)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import settings  # noqa: F401  (fail fast, with the setting's name, on bad configuration)
    except Exception as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(args.run(args))
    except CLIError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
