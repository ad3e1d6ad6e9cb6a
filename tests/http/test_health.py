from tests.helpers import assert_problem


async def test_health(client):
    r = await client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_unknown_path_and_method_are_problems(client):
    assert_problem(await client.get("/no/such/path"), 404, "not_found")
    assert_problem(await client.delete("/health"), 405, "method_not_allowed")


async def test_ready_when_the_database_answers_and_every_migration_is_applied(client):
    r = await client.get("/ready")
    assert r.status_code == 200 and r.json() == {"status": "ready"}


async def test_probes_answer_whatever_the_host_and_nothing_else_does(client):
    for host in ("10.0.0.7", "10.0.0.7:8080", "[fd00::7]:8080"):
        assert (await client.get("/health", headers={"Host": host})).status_code == 200
        assert (await client.get("/ready", headers={"Host": host})).status_code == 200
        assert_problem(await client.get("/user/me", headers={"Host": host}), 400)
        assert_problem(await client.get("/health/", headers={"Host": host}), 400)


async def test_not_ready_while_a_migration_is_missing_and_ready_once_applied(client, monkeypatch):
    from apps.core import health

    monkeypatch.setattr(health, "_all_applied", False)
    on_disk = health.migrations_on_disk()
    monkeypatch.setattr(health, "migrations_on_disk", lambda: on_disk | {("user", "9999_from_the_future")})
    r = await client.get("/ready")
    body = assert_problem(r, 503, "service_unavailable")
    assert int(r.headers["retry-after"]) > 0 and "9999" not in r.text and "migrated" in body["detail"]
    monkeypatch.setattr(health, "migrations_on_disk", lambda: on_disk)
    assert (await client.get("/ready")).status_code == 200


def test_every_migration_file_is_found():
    from apps.core import health

    found = health.migrations_on_disk()
    assert ("user", "0001_initial") in found and ("mail", "0001_initial") in found
    assert all(name[:4].isdigit() for _, name in found)
