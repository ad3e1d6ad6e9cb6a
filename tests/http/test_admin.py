"""Issue 4, points 3 and 4: scopes on request.auth, the scope decorator, and the staff API."""

import pytest

from apps.user.models import Session, User
from tests.helpers import PASSWORD, assert_problem, bearer, register, unique


async def test_scopes_follow_the_flags(client, staff, superuser):
    plain = await register(client)
    scopes = {}
    for name, who in (("plain", plain), ("staff", staff), ("superuser", superuser)):
        r = await client.get("/user/verify", headers=bearer(who["access_token"]))
        scopes[name] = r.headers["x-user-scopes"]
    assert scopes == {
        "plain": "authenticated",
        "staff": "authenticated staff",
        "superuser": "authenticated staff superuser",
    }


async def test_no_token_is_401_and_no_scope_is_403(client):
    r = await client.get("/admin/users")
    assert_problem(r, 401, "not_authenticated")
    assert r.headers["www-authenticate"].startswith("Bearer")
    plain = await register(client)
    body = assert_problem(
        await client.get("/admin/users", headers=bearer(plain["access_token"])), 403, "permission_denied"
    )
    assert "staff" in body["detail"]


async def test_list_paginates_searches_and_filters(client, staff):
    tag = unique("find")
    made = [await register(client, username=f"{tag}{i}", email=f"{tag}{i}@Example.com") for i in range(3)]
    await User.filter(id=made[2]["user"]["id"]).update(is_active=False)
    auth = bearer(staff["access_token"])

    r = await client.get("/admin/users", params={"search": tag.upper(), "page_size": 2}, headers=auth)
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["count"] == 3 and page["page"] == 1 and page["page_size"] == 2
    assert [u["username"] for u in page["results"]] == [f"{tag}0", f"{tag}1"]
    assert set(page["results"][0]) == {
        "id",
        "username",
        "email",
        "is_active",
        "is_staff",
        "is_superuser",
        "email_verified",
        "pending_email",
        "has_usable_password",
        "date_joined",
        "last_login",
    }
    second = (
        await client.get("/admin/users", params={"search": tag, "page_size": 2, "page": 2}, headers=auth)
    ).json()
    assert [u["username"] for u in second["results"]] == [f"{tag}2"]
    inactive = (
        await client.get("/admin/users", params={"search": tag, "is_active": "false"}, headers=auth)
    ).json()
    assert [u["id"] for u in inactive["results"]] == [made[2]["user"]["id"]]
    by_email = (await client.get("/admin/users", params={"search": f"{tag}1@example"}, headers=auth)).json()
    assert by_email["count"] == 1
    staff_only = (
        await client.get("/admin/users", params={"is_staff": "true", "page_size": 200}, headers=auth)
    ).json()
    assert all(u["is_staff"] for u in staff_only["results"]) and staff["id"] in {
        u["id"] for u in staff_only["results"]
    }


async def test_search_wildcards_are_literal(client, staff):
    r = await client.get("/admin/users", params={"search": "%"}, headers=bearer(staff["access_token"]))
    assert r.status_code == 200 and r.json()["count"] == 0


@pytest.mark.parametrize(
    "params", [{"page": "0"}, {"page_size": "201"}, {"is_active": "perhaps"}, {"order": "id"}]
)
async def test_bad_query_parameters_are_422(client, staff, params):
    body = assert_problem(
        await client.get("/admin/users", params=params, headers=bearer(staff["access_token"])), 422
    )
    assert [e["field"] for e in body["errors"]] == list(params)


async def test_get_one_and_404(client, staff):
    target = await register(client)
    auth = bearer(staff["access_token"])
    r = await client.get(f"/admin/users/{target['user']['id']}", headers=auth)
    assert r.status_code == 200 and r.json()["email"] == target["user"]["email"]
    assert_problem(await client.get("/admin/users/999999999", headers=auth), 404, "not_found")
    assert_problem(await client.get("/admin/users/99999999999999999999", headers=auth), 404)
    assert_problem(await client.get("/admin/users/abc", headers=auth), 404)


async def test_deactivation_refuses_the_users_tokens_at_once(client, staff):
    target = await register(client)
    assert (await client.get("/user/me", headers=bearer(target["access_token"]))).status_code == 200
    r = await client.patch(
        f"/admin/users/{target['user']['id']}",
        json={"is_active": False},
        headers=bearer(staff["access_token"]),
    )
    assert r.status_code == 200 and r.json()["is_active"] is False
    assert_problem(await client.get("/user/me", headers=bearer(target["access_token"])), 401, "invalid_token")
    assert_problem(
        await client.post("/user/login", json={"email": target["user"]["email"], "password": PASSWORD}), 401
    )
    r = await client.patch(
        f"/admin/users/{target['user']['id']}",
        json={"is_active": True},
        headers=bearer(staff["access_token"]),
    )
    assert r.json()["is_active"] is True
    assert (
        await client.post("/user/login", json={"email": target["user"]["email"], "password": PASSWORD})
    ).status_code == 200


async def test_promotion_reaches_request_auth_at_once(client, superuser):
    target = await register(client)
    assert_problem(await client.get("/admin/users", headers=bearer(target["access_token"])), 403)
    r = await client.patch(
        f"/admin/users/{target['user']['id']}",
        json={"is_staff": True},
        headers=bearer(superuser["access_token"]),
    )
    assert r.status_code == 200, r.text
    assert (await client.get("/admin/users", headers=bearer(target["access_token"]))).status_code == 200


async def test_only_a_superuser_grants_superuser_or_touches_one(client, staff, superuser):
    target = await register(client)
    r = await client.patch(
        f"/admin/users/{target['user']['id']}",
        json={"is_superuser": True},
        headers=bearer(staff["access_token"]),
    )
    assert_problem(r, 403)
    assert (await User.get(id=target["user"]["id"])).is_superuser is False
    for method, path, body in (
        ("PATCH", "", {"is_active": False}),
        ("DELETE", "", None),
        ("DELETE", "/sessions", None),
    ):
        r = await client.request(
            method, f"/admin/users/{superuser['id']}{path}", json=body, headers=bearer(staff["access_token"])
        )
        assert_problem(r, 403)
    assert (await client.get("/user/me", headers=bearer(superuser["access_token"]))).status_code == 200
    r = await client.patch(
        f"/admin/users/{target['user']['id']}",
        json={"is_superuser": True, "is_staff": True},
        headers=bearer(superuser["access_token"]),
    )
    assert r.status_code == 200 and r.json()["is_superuser"] is True


@pytest.mark.parametrize(
    "body", [{"is_active": None}, {"is_active": "no"}, {"password": "x"}, {"username": "x"}]
)
async def test_updates_are_validated(client, staff, body):
    target = await register(client)
    r = await client.patch(
        f"/admin/users/{target['user']['id']}", json=body, headers=bearer(staff["access_token"])
    )
    assert_problem(r, 422)


async def test_delete_and_end_sessions(client, staff):
    auth = bearer(staff["access_token"])
    target = await register(client)
    other = (
        await client.post("/user/login", json={"email": target["user"]["email"], "password": PASSWORD})
    ).json()
    r = await client.delete(f"/admin/users/{target['user']['id']}/sessions", headers=auth)
    assert r.status_code == 200 and r.json() == {"ended": 2}
    for pair in (target, other):
        assert_problem(await client.get("/user/me", headers=bearer(pair["access_token"])), 401)
    again = (
        await client.post("/user/login", json={"email": target["user"]["email"], "password": PASSWORD})
    ).json()
    assert (await client.delete(f"/admin/users/{target['user']['id']}", headers=auth)).status_code == 204
    assert_problem(await client.get("/user/me", headers=bearer(again["access_token"])), 401)
    assert not await User.exists(id=target["user"]["id"])
    assert not await Session.exists(user_id=target["user"]["id"])
    assert_problem(await client.delete(f"/admin/users/{target['user']['id']}", headers=auth), 404)
