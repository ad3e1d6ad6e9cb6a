"""Point 6: the authentication backend and the request-id middleware."""

import logging

from tests.helpers import assert_problem, bearer, register


async def test_no_header_is_anonymous_and_protected_views_answer_401(client):
    r = await client.get("/user/me")
    assert_problem(r, 401, "not_authenticated")
    assert r.headers["www-authenticate"] == 'Bearer realm="api"'
    # anonymous is fine where no login is required
    assert (await client.get("/health")).status_code == 200


async def test_other_schemes_are_not_ours(client):
    r = await client.get("/user/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_problem(r, 401, "not_authenticated")
    assert "invalid_token" not in r.headers["www-authenticate"]


async def test_broken_bearer_token_is_401_even_on_public_routes(client):
    for header in ("Bearer", "Bearer ", "Bearer not.a.token", "bearer a.b.c"):
        r = await client.get("/health", headers={"Authorization": header})
        assert_problem(r, 401, "invalid_token")
        assert 'error="invalid_token"' in r.headers["www-authenticate"]


async def test_request_user_and_scopes(app, client):
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def whoami(request):
        u = request.user
        return JSONResponse(
            {
                "id": u.id,
                "username": u.username,
                "email": u.email,
                "is_staff": u.is_staff,
                "session_id": u.session_id,
                "scopes": request.auth.scopes,
            }
        )

    app.router.routes.append(Route("/test/whoami", whoami))
    try:
        reg = await register(client)
        body = (await client.get("/test/whoami", headers=bearer(reg["access_token"]))).json()
    finally:
        app.router.routes.pop()
    import jwt

    sid = jwt.decode(reg["access_token"], options={"verify_signature": False})["sid"]
    assert body == {
        "id": reg["user"]["id"],
        "username": reg["user"]["username"],
        "email": reg["user"]["email"],
        "is_staff": False,
        "session_id": sid,
        "scopes": ["authenticated"],
    }


async def test_request_id_is_generated_echoed_and_logged(client, caplog):
    with caplog.at_level(logging.INFO):
        generated = (await client.get("/health")).headers["x-request-id"]
        echoed = await client.get("/no/such/path", headers={"X-Request-ID": "nginx-abc.123"})
    assert len(generated) == 32
    assert echoed.headers["x-request-id"] == "nginx-abc.123"
    access = [r for r in caplog.records if r.name == "authservice.access"]
    assert [r.request_id for r in access][-2:] == [generated, "nginx-abc.123"]


async def test_request_id_reaches_every_log_line_of_the_request(client, caplog, monkeypatch):
    from apps.user import accounts

    real_login = accounts.login

    async def logging_login(*args, **kwargs):
        logging.getLogger("apps.user.accounts").warning("inside the login service")
        return await real_login(*args, **kwargs)

    monkeypatch.setattr(accounts, "login", logging_login)
    with caplog.at_level(logging.INFO):
        r = await client.post(
            "/user/login",
            json={"email": "nobody@example.com", "password": "whatever1"},
            headers={"X-Request-ID": "trace-42"},
        )
    assert r.status_code == 401
    inside = [rec for rec in caplog.records if rec.getMessage() == "inside the login service"]
    assert inside and inside[0].request_id == "trace-42"


async def test_malformed_request_id_is_replaced(client):
    r = await client.get("/health", headers={"X-Request-ID": "evil\tinjected log line"})
    assert r.headers["x-request-id"] != "evil\tinjected log line" and len(r.headers["x-request-id"]) == 32
