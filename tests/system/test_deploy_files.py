"""The Docker deployment files, checked statically: compose.yaml, the Dockerfile, .dockerignore,
deploy/nginx.compose.conf and deploy/compose.env.example.

No Docker engine runs where this project is tested, so nothing here builds the image or starts a
container: these tests read the files and hold them to what the deployment needs (the four services
with healthchecks and their start-up order, no secret in a file, a non-root image that serves what
settings.py requires, one npm build of the web app in both the app's image and nginx's, a build
context without .env, .venv or node_modules). The nginx file is the exception to "statically": it
goes through the real `nginx -t`, with the compose host name the only substitution, and its locations
must be deploy/nginx.conf's, which tests/system/test_nginx.py runs for real. Both nginx files are
held to sending every route of the app to the app (nginx's own location matching, applied here to
each route of create_app()), so a new API route is never shadowed by the web app's files. Not marked
`system`: fast, part of `make test`; without nginx the `nginx -t` test fails, it does not skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import settings
from tests.helpers import ROOT, api_paths, free_port, spa_paths

COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE_NGINX = ROOT / "deploy" / "nginx.compose.conf"
DEPLOY_NGINX = ROOT / "deploy" / "nginx.conf"
COMPOSE_ENV_EXAMPLE = ROOT / "deploy" / "compose.env.example"
ENV_EXAMPLE = ROOT / ".env.example"

# What settings.py cannot do without outside DEBUG (SECRET_KEY has no default there), or must not be
# left at its development default in a container (SQLite inside the image, localhost only).
REQUIRED_APP_SETTINGS = {"SECRET_KEY", "DATABASE_URL", "ALLOWED_HOSTS"}
# Names that hold secrets: their values may only come from the environment, never from a file here.
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PRIVATE_KEY|TOKEN")
# The interpreter's and pip's own environment, set by the Dockerfile; not settings of the service.
RUNTIME_ENV = re.compile(r"PYTHON[A-Z_]*|PIP_[A-Z_]*|PATH")
INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name (`FROM image AS name`, else its index) -> its instructions, FROM first, in order."""
    named: dict[str, list[tuple[str, str]]] = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(named))
            named[name] = []
        named[name].append((keyword, arguments))
    return named


def base_image(stage: list[tuple[str, str]]) -> str:
    return stage[0][1].split()[0]


def copies_from(stage: list[tuple[str, str]], source_stage: str) -> list[tuple[str, str]]:
    """(source, destination) of each `COPY --from=source_stage`, destinations made absolute by the
    stage's WORKDIR at that point."""
    copies, workdir = [], "/"
    for keyword, arguments in stage:
        if keyword == "WORKDIR":
            workdir = os.path.join(workdir, arguments)
        elif keyword == "COPY" and arguments.startswith(f"--from={source_stage} "):
            source, destination = arguments.split()[1:]
            copies.append((source, os.path.normpath(os.path.join(workdir, destination))))
    return copies


def workdir_of(stage: list[tuple[str, str]]) -> str:
    workdir = "/"
    for keyword, arguments in stage:
        if keyword == "WORKDIR":
            workdir = os.path.join(workdir, arguments)
    return workdir


def env_file_names(path: Path, *, commented: bool = False) -> dict[str, str]:
    """NAME -> value of a dotenv file; with `commented`, `# NAME=value` lines count too."""
    pattern = r"^(?:#\s*)?([A-Z][A-Z0-9_]*)=(.*)$" if commented else r"^([A-Z][A-Z0-9_]*)=(.*)$"
    return {m.group(1): m.group(2) for m in re.finditer(pattern, path.read_text(), re.M)}


def app_services(services: dict) -> dict[str, dict]:
    """The services that run the app's image (nginx's, built here too, is another image)."""
    image = services["app"]["image"]
    return {name: s for name, s in services.items() if s.get("image") == image}


# --- compose.yaml ------------------------------------------------------------------------------


def test_compose_has_the_four_services_and_builds_the_app_from_the_dockerfile(services):
    assert {"app", "postgres", "redis", "nginx"} <= set(services), sorted(services)
    build = services["app"]["build"]
    context = ROOT / (build if isinstance(build, str) else build["context"])
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (context / dockerfile).resolve() == DOCKERFILE
    # the app's image is the Dockerfile's default target, its last stage (`docker build .` gives it)
    assert isinstance(build, str) or "target" not in build, build
    assert re.fullmatch(r"postgres:16(\.\d+)?(-[a-z0-9]+)?", services["postgres"]["image"])
    assert re.fullmatch(r"redis:7(\.\d+)*(-[a-z0-9]+)?", services["redis"]["image"])
    # nginx: the Dockerfile's nginx stage, carrying the web app's build and its configuration
    nginx_build = services["nginx"]["build"]
    assert (
        ROOT / nginx_build["context"] / nginx_build.get("dockerfile", "Dockerfile")
    ).resolve() == DOCKERFILE
    assert base_image(stages()[nginx_build["target"]]).startswith("nginx:"), nginx_build
    assert services["nginx"]["image"] != services["app"]["image"]
    # PostgreSQL's data outlives its container
    volumes = services["postgres"]["volumes"]
    assert any(v.split(":")[1] == "/var/lib/postgresql/data" for v in volumes), volumes


def test_every_long_running_service_has_a_healthcheck(services):
    probes = {}
    for name in ("app", "postgres", "redis", "nginx"):
        check = services[name].get("healthcheck")
        assert check and not check.get("disable") and check.get("test"), f"{name} has no healthcheck"
        probes[name] = " ".join(check["test"]) if isinstance(check["test"], list) else check["test"]
    assert "pg_isready" in probes["postgres"]
    assert "redis-cli ping" in probes["redis"]
    assert "http://127.0.0.1:8000/health" in probes["app"]
    assert "/health" in probes["nginx"]


def test_start_up_order_waits_for_health_and_for_the_migrations(services):
    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    assert conditions("app") == {
        "postgres": "service_healthy",
        "redis": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    assert conditions("nginx") == {"app": "service_healthy"}
    # nginx resolves app:8000 once, when it starts: it must restart with the app
    assert services["nginx"]["depends_on"]["app"].get("restart") is True
    # the one-shot migrations: this project's image, `manage.py migrate`, never restarted
    migrate = services["migrate"]
    assert migrate["image"] == services["app"]["image"]
    assert migrate["command"] == ["python", "manage.py", "migrate"]
    assert migrate["restart"] == "no"
    assert conditions("migrate") == {"postgres": "service_healthy"}
    for name in services:
        for dep, condition in conditions(name).items() if "depends_on" in services[name] else []:
            if condition == "service_healthy":
                assert services[dep].get("healthcheck", {}).get("test"), f"{name} waits on {dep}'s health"


def test_only_nginx_is_published_and_only_on_port_80(services):
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert published == {"nginx": ["80:80"]}, published
    # PostgreSQL and Redis sit on a network that nothing outside reaches
    assert services["postgres"]["networks"] == services["redis"]["networks"] == ["backend"]


def test_no_secret_value_is_written_in_compose_yaml(services):
    for service_name, service in services.items():
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), f"{service_name}: write environment as a mapping"
        for name, value in environment.items():
            value = str(value)
            if SECRET_NAME.search(name):
                # the whole value comes from the environment, and compose refuses to run without it
                assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", value), (service_name, name, value)
            # a password inside a URL too: every interpolation masked, what is left must hold none
            masked = INTERPOLATION.sub("${}", value)
            for url in re.finditer(r"\b[a-z][a-z0-9+]*://([^@/\s]*)@", masked):
                _, _, password = url.group(1).partition(":")
                assert password in {"", "${}"}, (service_name, name, "a password in a URL")
    # the env file's example leaves every secret empty
    secrets = {k: v for k, v in env_file_names(COMPOSE_ENV_EXAMPLE).items() if SECRET_NAME.search(k)}
    assert {"SECRET_KEY", "POSTGRES_PASSWORD"} <= set(secrets), secrets
    assert all(v == "" for v in secrets.values()), secrets


def test_the_app_gets_what_settings_requires_outside_debug(services):
    for name, service in app_services(services).items():
        environment = service["environment"]
        assert REQUIRED_APP_SETTINGS <= set(environment), (name, REQUIRED_APP_SETTINGS - set(environment))
        assert environment["DEBUG"] == "false", name
        # through the compose network to the services defined here
        assert re.fullmatch(r"postgres://\w+:\$\{[^}]+\}@postgres:5432/\w+", environment["DATABASE_URL"])
        assert environment["REDIS_URL"].startswith("redis://redis:6379/")
        # behind nginx, the client is what nginx puts in X-Forwarded-For: the throttles count per client
        assert environment["FORWARDED_ALLOW_IPS"], name
        assert service["env_file"] == ".env.compose", name
    # the database and role the URL names are the ones PostgreSQL is created with
    postgres = services["postgres"]["environment"]
    url = services["app"]["environment"]["DATABASE_URL"]
    assert url.startswith(f"postgres://{postgres['POSTGRES_USER']}:") and url.endswith(
        f"/{postgres['POSTGRES_DB']}"
    )


def test_the_documented_env_file_covers_what_compose_asks_for():
    asked = set(INTERPOLATION.findall(COMPOSE.read_text()))
    documented = env_file_names(COMPOSE_ENV_EXAMPLE)
    assert asked <= set(documented), asked - set(documented)
    # and everything else in it is a setting of the service, as .env.example lists them
    settings = set(env_file_names(ENV_EXAMPLE, commented=True))
    assert set(documented) - asked <= settings, set(documented) - asked - settings
    assert ".env.compose" in (ROOT / ".gitignore").read_text().splitlines()


def test_every_setting_the_dockerfile_and_compose_mention_is_in_env_example(services):
    settings = set(env_file_names(ENV_EXAMPLE, commented=True))
    mentioned = {
        name
        for keyword, arguments in dockerfile_instructions()
        if keyword == "ENV"
        for name in re.findall(r"(?:^|\s)([A-Z][A-Z0-9_]*)=", arguments)
    }
    for service in app_services(services).values():
        mentioned |= set(service["environment"])
    mentioned = {name for name in mentioned if not RUNTIME_ENV.fullmatch(name)}
    assert "WEB_CONCURRENCY" in mentioned and "SECRET_KEY" in mentioned, mentioned
    assert mentioned <= settings, mentioned - settings


# --- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_pins_python_3_11_and_runs_as_a_non_root_user():
    bases = {name: base_image(stage) for name, stage in stages().items()}
    python = {name: base for name, base in bases.items() if base.startswith("python:")}
    assert python and all(re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", b) for b in python.values())
    # besides them, only the web app's Node build and nginx's image; the app is the last stage
    others = [b for b in bases.values() if b not in python.values()]
    assert all(b == "node:20-slim" or re.fullmatch(r"nginx:[\w.-]+", b) for b in others), bases
    assert base_image(final_stage()) in python.values()
    users = [arguments for keyword, arguments in final_stage() if keyword == "USER"]
    assert users, "the final stage has no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, users[-1]
    # and it is the last word on who runs: no instruction after it could need root
    assert [k for k, _ in final_stage()].index("USER") > max(
        i for i, (k, _) in enumerate(final_stage()) if k in {"RUN", "COPY", "ADD"}
    )


def test_dockerfile_healthcheck_and_command():
    stage = final_stage()
    healthchecks = [arguments for keyword, arguments in stage if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "http://127.0.0.1:8000/health" in healthchecks[0], healthchecks
    commands = [arguments for keyword, arguments in stage if keyword == "CMD"]
    assert len(commands) == 1
    command = " ".join(yaml.safe_load(commands[0]))  # the exec form is a JSON array
    assert re.search(r"\bexec uvicorn app:app\b", command), command
    assert re.search(r'--workers "?\$\{?WEB_CONCURRENCY\b', command), command
    for flag in ("--host 0.0.0.0", "--port 8000", "--proxy-headers", "--no-access-log"):
        assert flag in command, (flag, command)
    # migrations are a separate, deliberate run, never a side effect of starting a container
    assert not any(k == "ENTRYPOINT" for k, _ in stage)
    assert "migrate" not in command
    assert ("EXPOSE", "8000") in stage


def test_dockerfile_installs_the_project_without_dev_extras_and_bakes_no_secret():
    instructions = dockerfile_instructions()
    installs = [a for k, a in instructions if k == "RUN" and "pip install" in a]
    assert installs == ["pip install ."], installs
    # the web app: what package-lock.json pins, without the lock's rewrite (npm ci refuses the lock)
    npm = [a for k, a in instructions if k == "RUN" and "npm " in a]
    assert npm == ["npm install --no-audit --no-fund --no-save", "npm run build"], npm
    for keyword, arguments in instructions:
        if keyword in {"ENV", "ARG"}:
            assert not SECRET_NAME.search(arguments), (keyword, arguments)
        if keyword in {"COPY", "ADD"}:
            sources = [s for s in arguments.split()[:-1] if not s.startswith("--")]
            assert not any(Path(s).name.startswith(".env") for s in sources), arguments
            assert "." not in sources, "COPY . copies whatever the context holds"


def test_dockerfile_builds_the_web_app_once_for_the_app_and_for_nginx():
    named = stages()
    spa = named["spa"]
    assert base_image(spa) == "node:20-slim"  # frontend/package.json: node >= 20.19
    # install from the manifest and the lock before the sources, so a source change reuses the install
    copied = [a.split()[:-1] for k, a in spa if k == "COPY"]
    assert copied[0] == ["frontend/package.json", "frontend/package-lock.json", "frontend/.npmrc"], copied
    assert copied[1] == ["frontend/"], copied
    dist = os.path.join(workdir_of(spa), "dist")
    # the app's image: where settings.FRONTEND_DIST's default points, relative to the code
    runtime = final_stage()
    default = settings.BASE_DIR / "frontend" / "dist"
    if "FRONTEND_DIST" not in os.environ:
        assert default == settings.FRONTEND_DIST
    expected = os.path.join(workdir_of(runtime), str(default.relative_to(settings.BASE_DIR)))
    assert copies_from(runtime, "spa") == [(dist, expected)]
    # nginx's image: the same build where deploy/nginx.compose.conf's root says, and that file
    web = named[yaml.safe_load(COMPOSE.read_text())["services"]["nginx"]["build"]["target"]]
    roots = re.findall(r"^\s*root\s+([^;\s]+);", COMPOSE_NGINX.read_text(), re.M)
    assert copies_from(web, "spa") == [(dist, roots[0])] and len(roots) == 1, roots
    assert ("COPY", "deploy/nginx.compose.conf /etc/nginx/conf.d/default.conf") in web
    # and the app's image, the default target, is last
    assert list(named).index("spa") < list(named).index("runtime") == len(named) - 1


def test_dockerfile_copies_every_top_level_module():
    copied = set()
    for keyword, arguments in final_stage():
        if keyword == "COPY" and not arguments.startswith("--from"):
            copied |= set(arguments.split()[:-1])
    modules = {p.name for p in ROOT.glob("*.py")}
    assert modules <= copied, modules - copied
    assert "apps" in copied
    for source in copied:
        assert (ROOT / source).exists(), source


# --- .dockerignore -----------------------------------------------------------------------------


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match, plus `**` for any number of directories)."""
    pattern = os.path.normpath(pattern.strip().lstrip("/"))
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] == "?":
            regex, i = regex + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            regex, i = regex + pattern[i : end + 1], end + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.compile(regex)


def sent_to_the_builder(path: str) -> bool:
    """Whether `path` is in the build context: the last rule matching it or a parent decides."""
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, _pattern(line.removeprefix("!"))))
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for negated, regex in rules:
        if any(regex.fullmatch(c) for c in candidates):
            included = negated
    return included


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build_context():
    for path in (
        ".env",
        ".env.compose",
        "apps/.env",
        ".venv/bin/python",
        "db.sqlite3",
        "db.sqlite3-wal",
        "apps/user/__pycache__/models.cpython-311.pyc",
        "bench/.peers/django/bin/python",
        "bench/results/latest.json",
        "tests/system/test_nginx.py",
        ".pytest_cache/v/cache/lastfailed",
        ".git/HEAD",
        "jwt-private.pem",
        # npm's install and the build are made in the image, never taken from the checkout
        "frontend/node_modules/vite/package.json",
        "frontend/dist/index.html",
        "frontend/dist/assets/index-abc123.js",
        "frontend/screenshots/login.png",
        "tests/e2e/node_modules/playwright-core/package.json",
        "deploy/nginx.conf",
    ):
        assert not sent_to_the_builder(path), path
    needed = {
        "pyproject.toml",
        "README.md",
        "deploy/nginx.compose.conf",
        *(p.name for p in ROOT.glob("*.py")),
    }
    for directory in ("apps", "frontend"):
        needed |= {str(p.relative_to(ROOT)) for p in (ROOT / directory).rglob("*") if p.is_file()}
    needed = {
        p
        for p in needed
        if "__pycache__" not in p
        and not p.startswith(("frontend/node_modules/", "frontend/dist/"))
        and not p.startswith("frontend/screenshots/")
    }
    assert "frontend/package-lock.json" in needed and "frontend/src/main.ts" in needed
    assert not {p for p in needed if not sent_to_the_builder(p)}


# --- nginx -------------------------------------------------------------------------------------


def location_blocks(text: str) -> dict[str, str]:
    """`location ...` line -> the block's text, for the blocks of one server (4-space indented)."""
    return {
        m.group(1): m.group(0)
        for m in re.finditer(r"^    (location [^\n{]+?)\s*\{\n.*?^    \}$", text, re.M | re.S)
    }


def test_compose_nginx_locations_are_the_deploy_files(services):
    # baked into nginx's image by the Dockerfile (test_dockerfile_builds_the_web_app_once...), not mounted
    assert "volumes" not in services["nginx"], services["nginx"].get("volumes")
    deploy, ours = DEPLOY_NGINX.read_text(), COMPOSE_NGINX.read_text()
    deploy_blocks, our_blocks = location_blocks(deploy), location_blocks(ours)
    assert list(our_blocks) == [
        "location ~ ^/user/(login|register|refresh-token|password/reset|email/verify)(/|$)",
        r"location ~ ^/((user|admin|docs|\.well-known)(/|$)|(health|ready|metrics|openapi\.json)$)",
        "location @throttled",
        "location @app",
        "location ^~ /assets/",
        "location = /index.html",
        "location /",
    ], list(our_blocks)
    # in the same order: regex locations are tried in the order they are written
    assert [line for line in deploy_blocks if line in our_blocks] == list(our_blocks)
    for line, block in our_blocks.items():
        assert block == deploy_blocks[line], f"{line} differs from deploy/nginx.conf's"
    for directive in ("limit_req_zone", "log_format", "client_max_body_size"):
        pattern = rf"^\s*{directive}\b[^;]*;"
        assert re.findall(pattern, ours, re.M) == re.findall(pattern, deploy, re.M), directive
    maps = re.compile(r"^map\b.*?^\}", re.M | re.S)
    assert maps.findall(ours) == maps.findall(deploy) and len(maps.findall(deploy)) == 1
    # plain HTTP on the port compose publishes, to the app service on the port its CMD serves
    assert re.findall(r"^\s*listen\s+([^;{\n]+);", ours, re.M) == ["80 default_server"]
    assert re.findall(r"^\s*server\s+([^;{\n]+);", ours, re.M) == ["app:8000"]


def nginx_location(text: str, path: str) -> str:
    """The `location` line of `text`'s server that nginx picks for `path`, by nginx's rules: an exact
    match; else the longest matching prefix, final if it is `^~`; else the first matching regex, in
    the file's order; else that longest prefix. Named (@) locations are never picked for a path."""
    exact, prefixes, regexes = {}, [], []
    for line in location_blocks(text):
        modifier, _, argument = line.removeprefix("location ").partition(" ")
        if not argument:
            modifier, argument = "", modifier
        if modifier == "=":
            exact[argument] = line
        elif modifier in ("", "^~"):
            prefixes.append((argument, modifier == "^~", line))
        elif modifier in ("~", "~*"):
            regexes.append((re.compile(argument, re.I if modifier == "~*" else 0), line))
        else:
            assert modifier.startswith("@"), line
    if path in exact:
        return exact[path]
    matching = [p for p in prefixes if path.startswith(p[0])]
    longest = max(matching, key=lambda p: len(p[0]), default=None)
    if longest is not None and longest[1]:
        return longest[2]
    for regex, line in regexes:
        if regex.search(path):
            return line
    assert longest is not None, f"no location for {path}"
    return longest[2]


def test_nginx_location_follows_nginxs_rules():
    text = (
        "server {\n"
        "    location ~ ^/user/login {\n    }\n"
        "    location ~ ^/user/ {\n    }\n"
        "    location ^~ /assets/ {\n    }\n"
        "    location = /index.html {\n    }\n"
        "    location /user/ {\n    }\n"
        "    location / {\n    }\n"
        "}\n"
    )
    assert nginx_location(text, "/user/login") == "location ~ ^/user/login"  # the first regex
    assert nginx_location(text, "/user/me") == "location ~ ^/user/"  # a regex beats a prefix
    assert nginx_location(text, "/assets/user/") == "location ^~ /assets/"
    assert nginx_location(text, "/index.html") == "location = /index.html"
    assert nginx_location(text, "/login") == "location /"


def proxies_to_the_app(block: str) -> bool:
    """The location hands the request to the app's upstream as it is, without looking for a file."""
    return bool(re.search(r"^\s*proxy_pass http://authservice;", block, re.M)) and "try_files" not in block


@pytest.mark.parametrize("conf", [DEPLOY_NGINX, COMPOSE_NGINX], ids=lambda p: p.name)
def test_every_route_of_the_app_is_proxied_to_the_app(conf):
    text = conf.read_text()
    blocks = location_blocks(text)
    # the upstream is the app (the port its CMD and the README's uvicorn serve)
    upstream = re.search(r"^upstream authservice \{\n(.*?)^\}", text, re.M | re.S)
    assert upstream and re.search(r"^\s*server (127\.0\.0\.1|app):8000;", upstream.group(1), re.M)
    paths = api_paths()
    assert {"/user/me", "/admin/users", "/health", "/openapi.json", "/docs", "/metrics"} <= set(paths)
    shadowed = {}
    for path in paths:
        line = nginx_location(text, path)
        if not proxies_to_the_app(blocks[line]):
            shadowed[path] = line
    assert not shadowed, f"{conf.name}: routes of the app that nginx does not send to it: {shadowed}"


@pytest.mark.parametrize("conf", [DEPLOY_NGINX, COMPOSE_NGINX], ids=lambda p: p.name)
def test_the_web_apps_routes_are_served_from_its_build(conf):
    # frontend/src/router.ts: no client-side route may start with an API prefix; this holds it to that
    text = conf.read_text()
    blocks = location_blocks(text)
    paths = spa_paths()
    assert {"/", "/login", "/verify-email", "/reset-password", "/settings/email"} <= set(paths), paths
    for path in [*paths, "/no/such/page"]:
        line = nginx_location(text, path)
        assert line == "location /" and "try_files $uri $authservice_not_a_file;" in blocks[line], (
            path,
            line,
        )


@pytest.fixture(scope="module")
def nginx() -> str:
    # Debian puts nginx in /usr/sbin, which a non-root PATH may lack
    path = shutil.which("nginx", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
    if path is None:
        pytest.fail("nginx is not installed (apt-get install -y nginx): `nginx -t` needs the real one")
    return path


def substitute(text: str, pattern: str, replacement: str) -> str:
    result, count = re.subn(pattern, replacement, text)
    assert count == 1, f"deploy/nginx.compose.conf: expected one match of {pattern!r}, found {count}"
    return result


def test_compose_nginx_conf_passes_nginx_t(nginx, tmp_path):
    # As in the image (conf.d/*.conf inside http { }); only what needs Docker is replaced: the app's
    # name, which only compose's DNS resolves (nginx -t resolves upstream servers), the port and
    # the log path.
    site = COMPOSE_NGINX.read_text()
    site = substitute(site, r"\bserver app:8000;", "server 127.0.0.1:8000;")
    site = substitute(site, r"\blisten\s+80\b", f"listen 127.0.0.1:{free_port()}")
    site = substitute(site, r"\baccess_log\s+/[^\s;]+", f"access_log {tmp_path / 'access.log'}")
    (tmp_path / "default.conf").write_text(site)
    temp = "\n".join(
        f"    {kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\n"
        "events { worker_connections 64; }\n"
        f"http {{\n{temp}\n    include {tmp_path / 'default.conf'};\n}}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(main)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr, result.stderr
