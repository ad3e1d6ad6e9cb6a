#!/usr/bin/env python
"""Django-style command line: `python manage.py <command> [options]`; `<command> --help` for each.

runserver [addr:port]   development server (uvicorn with reload)
migrate                 apply migrations to DATABASE_URL
makemigrations          write migrations for model changes (--check: fail if one is missing)
showmigrations          list applied migrations
createsuperuser         create a staff superuser (interactive, or --noinput with DJANGO_SUPERUSER_*)
changepassword <user>   set a user's password; ends their sessions
reset_mfa <user>        remove a user's second factors (lost authenticator app and passkeys)
shell                   asyncio REPL with the database connected and the models imported
clearsessions           delete ended and expired sessions
clearevents             delete history events older than EVENT_RETENTION_DAYS
clearmail [--days N]    delete outbox rows sent or given up more than N (30) days ago
check [--deploy]        inspect the settings for problems
import_django_users     import a Django project's users, passwords included
generate_jwt_key        print a new private key for JWT_PRIVATE_KEY (--algorithm EdDSA|ES256|RS256)
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import sys

from apps.core import commands as core_commands
from apps.core.commands import CommandError
from apps.core.exceptions import ImproperlyConfigured
from apps.mail import commands as mail_commands
from apps.user import commands as user_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="manage.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    core_commands.register(commands)
    user_commands.register(commands)
    mail_commands.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.needs_settings:
            import settings  # noqa: F401  (fail fast, naming the setting, on bad configuration)
        result = args.run(args)
        if inspect.iscoroutine(result):
            asyncio.run(result)
    except CommandError as exc:
        print(f"CommandError: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nOperation cancelled.", file=sys.stderr)
        return 1
    except ImproperlyConfigured as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
