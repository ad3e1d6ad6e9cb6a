from tests.helpers import assert_problem


async def test_health(client):
    r = await client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_unknown_path_and_method_are_problems(client):
    assert_problem(await client.get("/no/such/path"), 404, "not_found")
    assert_problem(await client.delete("/health"), 405, "method_not_allowed")
