"""manage.py commands about the project as a whole: runserver, migrations, shell, check."""

from __future__ import annotations

import argparse
import ast
import asyncio
import code
import inspect
import sys
import threading
import types
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent.parent


class CommandError(Exception):
    """A command cannot do what was asked; manage.py prints the message and exits with 1."""


@asynccontextmanager
async def database():
    """Tortoise connected to DATABASE_URL, and every registered component running, for the length of
    a command: the process a command runs in is the one a web worker runs in."""
    from tortoise import Tortoise

    import settings
    from apps.core import database as databases
    from apps.core import lifecycle

    config = databases.own_clients(settings.TORTOISE_ORM)
    databases.create_sqlite_file(config)
    await Tortoise.init(config=config, _enable_global_fallback=True)
    try:
        async with lifecycle.running():
            yield
    finally:
        await Tortoise.close_connections()


# --- migrations: Tortoise's own engine, fed by settings.TORTOISE_ORM ---------------------------------


def _tortoise_cli():
    from tortoise.cli import cli

    import settings
    from apps.core.database import create_sqlite_file

    create_sqlite_file(settings.TORTOISE_ORM)
    return cli, cli.CLIContext(config="settings.TORTOISE_ORM", config_file=None)


async def migrate(args: argparse.Namespace) -> None:
    cli, context = _tortoise_cli()
    await cli.migrate(context, args.app_label, args.migration_name, fake=args.fake, dry_run=args.plan)


async def makemigrations(args: argparse.Namespace) -> None:
    if args.check:
        await _check_migrations(args.app_label)
        return
    cli, context = _tortoise_cli()
    await cli.makemigrations(context, tuple(args.app_label), empty=args.empty, name=args.name)


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
        raise CommandError(
            f"models have changes without a migration (would create {names}); run makemigrations"
        )
    print("No changes detected")


async def showmigrations(args: argparse.Namespace) -> None:
    cli, context = _tortoise_cli()
    await cli.history(context, tuple(args.app_label))


# --- runserver ------------------------------------------------------------------------------------


def runserver(args: argparse.Namespace) -> None:
    """Django's development server: uvicorn, reloading on code changes."""
    import uvicorn

    host, _, port = (
        args.addrport.rpartition(":") if ":" in args.addrport else ("127.0.0.1", "", args.addrport)
    )
    if not port.isdigit():
        raise CommandError(f'"{args.addrport}" is not a valid port number or address:port pair.')
    uvicorn.run(
        "app:app",
        host=host.strip("[]") or "127.0.0.1",
        port=int(port),
        reload=not args.noreload,
        reload_dirs=[str(ROOT)],
        app_dir=str(ROOT),
    )


# --- shell ----------------------------------------------------------------------------------------


class AsyncConsole(code.InteractiveConsole):
    """The `python -m asyncio` REPL: top-level `await`, run on the event loop that owns the database."""

    def __init__(self, namespace: dict, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(namespace)
        self.compile.compiler.flags |= ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        self.loop = loop

    def runcode(self, compiled) -> None:
        try:
            result = types.FunctionType(compiled, self.locals)()
            if inspect.iscoroutine(result):
                asyncio.run_coroutine_threadsafe(result, self.loop).result()
        except SystemExit:
            raise
        except BaseException:
            self.showtraceback()


def shell(args: argparse.Namespace) -> None:
    """An asyncio REPL with the database connected and every installed app's models imported."""
    from tortoise import Tortoise

    import settings

    namespace = {"asyncio": asyncio, "settings": settings, "Tortoise": Tortoise}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    context = database()
    loop.run_until_complete(context.__aenter__())
    for app_models in Tortoise.apps.values():
        namespace.update(app_models)
    console = AsyncConsole(namespace, loop)
    database_kind = urlsplit(settings.DATABASE_URL).scheme
    banner = (
        f"authservice shell, Python {sys.version.split()[0]}, database {database_kind}\n"
        f"Imported: {', '.join(sorted(k for k in namespace if k != '__builtins__'))}\n"
        'Use "await" directly, e.g. await User.filter(is_staff=True).count()'
    )

    def interact() -> None:
        try:
            console.interact(banner=banner, exitmsg="")
        finally:
            loop.call_soon_threadsafe(loop.stop)

    threading.Thread(target=interact, daemon=True).start()
    loop.run_forever()
    loop.run_until_complete(context.__aexit__(None, None, None))
    loop.close()


# --- check ----------------------------------------------------------------------------------------


def check_settings(deploy: bool) -> list[tuple[str, str, str]]:
    """(level, id, message) for each problem, Django's system-check style."""
    try:
        import settings
    except Exception as exc:  # settings refuse to load: that is the first error to report
        return [("ERROR", "settings.E000", str(exc))]
    issues = []
    if not deploy:
        return issues
    if settings.DEBUG:
        issues.append(("ERROR", "security.E001", "DEBUG is true: tracebacks reach clients; set DEBUG=false."))
    key = settings.SECRET_KEY
    if len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure-"):  # Django's W009 rule
        issues.append(
            (
                "ERROR",
                "security.E002",
                "SECRET_KEY is weak (shorter than 50 characters or little variety): anyone who guesses it "
                'forges tokens. Generate one: python -c "import secrets; print(secrets.token_urlsafe(50))"',
            )
        )
    if "*" in settings.ALLOWED_HOSTS or any(h in {"*.", ".*"} for h in settings.ALLOWED_HOSTS):
        issues.append(("ERROR", "security.E003", "ALLOWED_HOSTS allows any host; list the real host names."))
    if any("*" in origin for origin in settings.CORS_ALLOWED_ORIGINS):
        issues.append(
            ("ERROR", "security.E004", "CORS_ALLOWED_ORIGINS holds a wildcard; list origins explicitly.")
        )
    if settings.DATABASE_URL.startswith("sqlite") and not settings.DEBUG:
        issues.append(
            (
                "WARNING",
                "database.W001",
                "SQLite with DEBUG off: fine on one small host; use PostgreSQL for several workers or hosts.",
            )
        )
    if settings.EMAIL_BACKEND == "console":
        issues.append(
            (
                "WARNING",
                "mail.W001",
                "EMAIL_BACKEND is console: mail (verification and reset links) goes to the server's "
                "standard output, not to users; set EMAIL_BACKEND=smtp and EMAIL_HOST.",
            )
        )
    if settings.FRONTEND_URL.startswith("http://") and not settings.DEBUG:
        issues.append(
            (
                "WARNING",
                "mail.W002",
                "FRONTEND_URL is http://: reset and verification links in mails travel in clear; use https.",
            )
        )
    if settings.METRICS_ENABLED and any(network.prefixlen == 0 for network in settings.METRICS_ALLOWED_IPS):
        issues.append(
            (
                "ERROR",
                "security.E005",
                "METRICS_ALLOWED_IPS allows every address: anyone can read /metrics; list the Prometheus "
                "server's address or network.",
            )
        )
    insecure = [o for o in settings.WEBAUTHN_ORIGINS if o.startswith("http://")]
    if insecure and not settings.DEBUG:
        issues.append(
            (
                "WARNING",
                "mfa.W001",
                f"WEBAUTHN_ORIGINS lists http:// origins ({', '.join(insecure)}): browsers offer passkeys on "
                "https pages (and localhost) only; set WEBAUTHN_ORIGINS to the SPA's https origin.",
            )
        )
    if settings.API_DOCS and not settings.DEBUG:
        issues.append(
            (
                "WARNING",
                "security.W002",
                "API_DOCS is on in production: /docs and /openapi.json describe the API to anyone.",
            )
        )
    return issues


def check(args: argparse.Namespace) -> None:
    issues = check_settings(args.deploy)
    if not issues:
        print("System check identified no issues (0 silenced).")
        return
    print("System check identified some issues:\n")
    for level in ("ERROR", "WARNING"):
        found = [i for i in issues if i[0] == level]
        if found:
            print(f"{level}S:")
            for _, issue_id, message in found:
                print(f"?: ({issue_id}) {message}")
            print()
    print(f"System check identified {len(issues)} issue{'s' if len(issues) != 1 else ''} (0 silenced).")
    levels = ["WARNING", "ERROR"] if args.fail_level == "WARNING" else ["ERROR"]
    if any(level in levels for level, _, _ in issues):
        raise SystemExit(1)


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("runserver", help="development server (uvicorn with reload)")
    p.add_argument(
        "addrport", nargs="?", default="127.0.0.1:8000", help="port or address:port (127.0.0.1:8000)"
    )
    p.add_argument("--noreload", action="store_true", help="do not restart on code changes")
    p.set_defaults(run=runserver, needs_settings=True)

    p = commands.add_parser("migrate", help="apply migrations to DATABASE_URL")
    p.add_argument("app_label", nargs="?", help="only this app")
    p.add_argument("migration_name", nargs="?", help="migrate to this migration (forwards or backwards)")
    p.add_argument("--fake", action="store_true", help="mark as applied without running them")
    p.add_argument("--plan", action="store_true", help="show what would run, change nothing")
    p.set_defaults(run=migrate, needs_settings=True)

    p = commands.add_parser("makemigrations", help="write migrations for model changes")
    p.add_argument("app_label", nargs="*", help="only these apps")
    p.add_argument("--empty", action="store_true", help="an empty migration to fill by hand")
    p.add_argument("-n", "--name", help="name of the migration")
    p.add_argument(
        "--check", action="store_true", help="exit non-zero if a migration is missing; write nothing"
    )
    p.set_defaults(run=makemigrations, needs_settings=True)

    p = commands.add_parser("showmigrations", help="list the migrations applied to DATABASE_URL")
    p.add_argument("app_label", nargs="*", help="only these apps")
    p.set_defaults(run=showmigrations, needs_settings=True)

    p = commands.add_parser("shell", help="asyncio REPL with the database connected and the models imported")
    p.set_defaults(run=shell, needs_settings=True)

    p = commands.add_parser("check", help="inspect the settings for problems")
    p.add_argument("--deploy", action="store_true", help="also check what matters in production")
    p.add_argument(
        "--fail-level",
        choices=["ERROR", "WARNING"],
        default="ERROR",
        help="the level at which the command exits non-zero (ERROR)",
    )
    p.set_defaults(run=check, needs_settings=False)
