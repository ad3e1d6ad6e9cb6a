"""manage.py commands about accounts, with Django's names, flags and prompts.

What needs settings is imported inside the commands, so that `manage.py --help` and `check` work
even when the settings do not load.
"""

from __future__ import annotations

import argparse
import getpass
import os

from apps.core.commands import CommandError, database
from apps.user import keys  # no settings needed: it parses what settings.py hands it

USERNAME, EMAIL, PASSWORD = "username", "email", "password"
PROGRESS_EVERY = 5000  # import_django_users: users between progress lines (or a second)


def _validated(kind: str, value: str) -> str:
    """The value as registration would accept it, or CommandError with registration's message."""
    from pydantic import TypeAdapter, ValidationError

    from apps.user.schemas import Email, NewPassword, Username

    adapter = TypeAdapter({USERNAME: Username, EMAIL: Email, PASSWORD: NewPassword}[kind])
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise CommandError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None


def _ask(prompt: str, kind: str, check=None) -> str:
    """Prompt until the answer is valid, printing each error as Django does."""
    while True:
        try:
            value = _validated(kind, input(prompt))
            if check:
                check(value)
            return value
        except CommandError as exc:
            print(f"Error: {exc}")


def _ask_password() -> str:
    """Read a new password twice without echo, validated like registration."""
    while True:
        first = getpass.getpass("Password: ")
        second = getpass.getpass("Password (again): ")
        if first != second:
            print("Error: Your passwords didn't match.")
            continue
        try:
            return _validated(PASSWORD, first)
        except CommandError as exc:
            print(f"Error: {exc}")


async def createsuperuser(args: argparse.Namespace) -> None:
    """Create a staff superuser, interactively or (--noinput) from DJANGO_SUPERUSER_* variables."""
    from apps.user import accounts
    from apps.user.exceptions import AccountError
    from apps.user.models import User, username_key

    async with database():
        if args.noinput:
            username = args.username or os.environ.get("DJANGO_SUPERUSER_USERNAME")
            email = args.email or os.environ.get("DJANGO_SUPERUSER_EMAIL")
            if not username:
                raise CommandError(
                    "You must use --username with --noinput (or set DJANGO_SUPERUSER_USERNAME)."
                )
            if not email:
                raise CommandError("You must use --email with --noinput (or set DJANGO_SUPERUSER_EMAIL).")
            username, email = _validated(USERNAME, username), _validated(EMAIL, email)
            password = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
            password = _validated(PASSWORD, password) if password else None
        else:
            existing = {u.username_key for u in await User.all().only("username_key")}

            def unused(name: str) -> None:
                if username_key(name) in existing:
                    raise CommandError("That username is already taken.")

            username = (
                _validated(USERNAME, args.username) if args.username else _ask("Username: ", USERNAME, unused)
            )
            email = _validated(EMAIL, args.email) if args.email else _ask("Email address: ", EMAIL)
            password = _ask_password()
        try:
            await accounts.create_user(username, email, password, is_staff=True, is_superuser=True)
        except AccountError as exc:  # taken, or a password the policy refuses
            raise CommandError(" ".join(e["message"] for e in exc.errors or []) or exc.message) from None
    print("Superuser created successfully.")


async def changepassword(args: argparse.Namespace) -> None:
    """Set a user's password (asked twice, no echo); every session of theirs ends at once."""
    from apps.user import accounts
    from apps.user.exceptions import WeakPassword
    from apps.user.models import User, username_key

    async with database():
        username = args.username or getpass.getuser()
        user = await User.get_or_none(username_key=username_key(username))
        if user is None:
            raise CommandError(f"user '{username}' does not exist")
        print(f"Changing password for user '{user.username}'")
        password = _ask_password()
        try:
            ended = await accounts.set_password(user, password)
        except WeakPassword as exc:
            raise CommandError(exc.message) from None
    print(f"Password changed successfully for user '{user.username}'; {ended} session(s) ended.")


async def reset_mfa(args: argparse.Namespace) -> None:
    """Remove every second factor of a user who lost them (the history records it)."""
    from apps.user import accounts
    from apps.user.models import User, username_key

    async with database():
        user = await User.get_or_none(username_key=username_key(args.username))
        if user is None:
            raise CommandError(f"user '{args.username}' does not exist")
        removed = await accounts.reset_second_factors(None, user, None)
    print(
        f"Removed {removed} second factor(s) of user '{user.username}'; they log in with the password alone."
    )


async def clearsessions(args: argparse.Namespace) -> None:
    """Delete ended and expired sessions with their refresh tokens."""
    from apps.user import sessions

    async with database():
        deleted = await sessions.clear()
    print(f"Deleted {deleted} ended or expired session(s).")


async def clearevents(args: argparse.Namespace) -> None:
    """Delete history events older than EVENT_RETENTION_DAYS."""
    import settings
    from apps.user import events

    async with database():
        deleted = await events.prune()
    print(f"Deleted {deleted} event(s) older than {settings.EVENT_RETENTION_DAYS} days.")


async def import_django_users(args: argparse.Namespace) -> None:
    """Import a Django project's auth_user, passwords included; re-running updates, never duplicates.

    Progress goes to stdout every PROGRESS_EVERY users or every second, whichever comes first.
    """
    import time

    from apps.user import django_import

    verb = "checked" if args.dry_run else "imported"
    last = {"printed": time.monotonic(), "done": 0}

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        crossed = done // PROGRESS_EVERY > last["done"] // PROGRESS_EVERY
        if done == total or crossed or now - last["printed"] >= 1:
            print(f"{verb} {done}/{total} Django users", flush=True)
            last.update(printed=now, done=done)

    try:
        source = django_import.source(database_url=args.database_url, json_path=args.json)
        plan = await django_import.survey(source)
    except (OSError, ValueError, KeyError) as exc:
        raise CommandError(f"cannot read the Django users: {exc}") from None
    except Exception as exc:  # a database that does not answer, or has no auth_user table
        raise CommandError(f"cannot read the Django users: {type(exc).__name__}: {exc}") from None
    print(f"{plan.total} Django users to import, in batches of {django_import.BATCH_SIZE}", flush=True)
    from apps.user.exceptions import AccountError

    async with database():
        try:
            report = await django_import.import_users(source, plan, dry_run=args.dry_run, progress=progress)
        except AccountError as exc:  # e.g. it would demote the last active superuser
            raise CommandError(exc.message) from None
    print(report.summary(args.dry_run))
    if args.dry_run:
        print("Dry run: nothing was written.")


def generate_jwt_key(args: argparse.Namespace) -> None:
    """Print a new private key for JWT_PRIVATE_KEY, as a PEM and as a line to paste into .env.

    It needs no settings: it is what one runs to write them. The key is printed, never stored.
    """
    pem = keys.private_pem(keys.generate_private_key(args.algorithm))
    # One line: .env files hold one value a line, and settings.py turns the \n escapes back.
    one_line = pem.strip().replace("\n", "\\n")
    print(f"# A new {args.algorithm} private key. Whoever holds it can sign access tokens: keep it as secret")
    print("# as SECRET_KEY, out of version control. The PEM:")
    print(pem)
    print("# For .env (or the environment), one line with \\n escapes:")
    print(f"JWT_ALGORITHM={args.algorithm}")
    print(f"JWT_PRIVATE_KEY={one_line}")
    print()
    print("# Rotating keys: move the current JWT_PRIVATE_KEY value to JWT_PRIVATE_KEY_FALLBACKS (newest")
    print("# first), so tokens it signed still verify and its public key stays in /.well-known/jwks.json;")
    print("# drop it from there once ACCESS_TOKEN_LIFETIME has passed.")


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("createsuperuser", help="create a staff superuser")
    p.add_argument("--username", help="the username (asked for if missing)")
    p.add_argument("--email", help="the email address (asked for if missing)")
    p.add_argument(
        "--noinput",
        "--no-input",
        action="store_true",
        help="ask nothing: DJANGO_SUPERUSER_USERNAME, _EMAIL and _PASSWORD (none: unusable password)",
    )
    p.set_defaults(run=createsuperuser, needs_settings=True)

    p = commands.add_parser("changepassword", help="change a user's password; ends their sessions")
    p.add_argument("username", nargs="?", help="the user (default: the current system user name)")
    p.set_defaults(run=changepassword, needs_settings=True)

    p = commands.add_parser(
        "reset_mfa", help="remove a user's authenticator app, recovery codes and passkeys"
    )
    p.add_argument("username", help="the user who lost their second factors")
    p.set_defaults(run=reset_mfa, needs_settings=True)

    p = commands.add_parser("clearsessions", help="delete ended and expired sessions")
    p.set_defaults(run=clearsessions, needs_settings=True)

    p = commands.add_parser("clearevents", help="delete history events older than EVENT_RETENTION_DAYS")
    p.set_defaults(run=clearevents, needs_settings=True)

    p = commands.add_parser(
        "import_django_users", help="import users (and their passwords) from a Django project"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--database-url", help="the Django database: sqlite:////abs/path/db.sqlite3 or postgres://..."
    )
    source.add_argument("--json", help='a file written by "manage.py dumpdata auth.user"')
    p.add_argument("--dry-run", action="store_true", help="report what would happen, write nothing")
    p.set_defaults(run=import_django_users, needs_settings=True)

    p = commands.add_parser(
        "generate_jwt_key", help="print a new private key for JWT_PRIVATE_KEY (EdDSA, ES256 or RS256)"
    )
    p.add_argument(
        "--algorithm",
        choices=keys.ASYMMETRIC_ALGORITHMS,
        default="EdDSA",
        help="the JWT_ALGORITHM the key is for (EdDSA: Ed25519, the smallest and fastest)",
    )
    p.set_defaults(run=generate_jwt_key, needs_settings=False)
