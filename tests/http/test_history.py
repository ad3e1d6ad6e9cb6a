"""Issue 8, points 5, 6 and 8: the device list (end one session, end all), the account's history
written in the transaction of the change it records, the staff's view of both, pruning, and the
W3C change-password URL."""

from datetime import UTC, datetime, timedelta

import pytest

import settings
from apps.user import events
from apps.user.models import Event, Session, User
from tests.helpers import PASSWORD, assert_problem, bearer, register

AGENT = {"User-Agent": "history-test/2.0"}


async def login(client, reg, headers=None, password=PASSWORD):
    r = await client.post(
        "/user/login", json={"email": reg["user"]["email"], "password": password}, headers=headers
    )
    assert r.status_code == 200, r.text
    return r.json()


async def types_of(user_id: int) -> list[str]:
    return [e.type for e in await Event.filter(user_id=user_id).order_by("-at", "-id")]


# --- sessions -----------------------------------------------------------------------------------------


async def test_the_device_list_shows_live_sessions_newest_first_and_marks_the_callers(client):
    reg = await register(client)
    second = await login(client, reg, headers=AGENT)
    gone = await login(client, reg)
    await client.post("/user/logout", headers=bearer(gone["access_token"]))
    r = await client.get("/user/sessions", headers=bearer(second["access_token"]))
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    rows = r.json()
    assert len(rows) == 2, rows  # the logged-out one is not listed
    assert [row["current"] for row in rows] == [True, False]  # newest first: the second login
    assert rows[0]["user_agent"] == "history-test/2.0" and rows[0]["ip_address"] == "203.0.113.7"


async def test_ending_a_session_from_the_list_refuses_its_cached_token_at_once(client):
    reg = await register(client)
    phone = await login(client, reg)
    assert (await client.get("/user/me", headers=bearer(phone["access_token"]))).status_code == 200  # cached
    rows = (await client.get("/user/sessions", headers=bearer(reg["access_token"]))).json()
    phone_session = next(row["id"] for row in rows if not row["current"])
    r = await client.delete(f"/user/sessions/{phone_session}", headers=bearer(reg["access_token"]))
    assert r.status_code == 204
    assert_problem(await client.get("/user/me", headers=bearer(phone["access_token"])), 401, "invalid_token")
    r = await client.post("/user/refresh-token", json={"refresh_token": phone["refresh_token"]})
    assert_problem(r, 401)
    assert (await client.get("/user/me", headers=bearer(reg["access_token"]))).status_code == 200
    assert (await types_of(reg["user"]["id"]))[0] == events.SESSION_REVOKED


async def test_another_users_session_is_not_found_and_stays_live(client):
    mine, theirs = await register(client), await register(client)
    their_session = (await client.get("/user/sessions", headers=bearer(theirs["access_token"]))).json()[0][
        "id"
    ]
    r = await client.delete(f"/user/sessions/{their_session}", headers=bearer(mine["access_token"]))
    assert_problem(r, 404, "not_found")
    assert (await client.get("/user/me", headers=bearer(theirs["access_token"]))).status_code == 200
    assert_problem(
        await client.delete("/user/sessions/not-a-uuid", headers=bearer(mine["access_token"])), 404
    )


async def test_logout_all_ends_every_session_this_one_included(client):
    reg = await register(client)
    other = await login(client, reg)
    assert (await client.post("/user/logout-all", headers=bearer(reg["access_token"]))).status_code == 204
    for pair in (reg, other):
        assert_problem(await client.get("/user/me", headers=bearer(pair["access_token"])), 401)
    assert not await Session.filter(user_id=reg["user"]["id"], revoked_at=None).exists()


async def test_staff_see_a_users_live_sessions(client, staff):
    reg = await register(client)
    await login(client, reg, headers=AGENT)
    r = await client.get(f"/admin/users/{reg['user']['id']}/sessions", headers=bearer(staff["access_token"]))
    assert r.status_code == 200 and len(r.json()) == 2 and not any(row["current"] for row in r.json())
    r = await client.get(f"/admin/users/{reg['user']['id']}/sessions", headers=bearer(reg["access_token"]))
    assert_problem(r, 403)


# --- history ------------------------------------------------------------------------------------------


async def test_every_change_leaves_its_event_with_the_clients_address_and_agent(client, staff):
    reg = await register(client, password="History-Pass-1")
    uid = reg["user"]["id"]
    bad = await client.post("/user/login", json={"email": reg["user"]["email"], "password": "Wrong-Pass-1"})
    assert_problem(bad, 401)
    pair = await login(client, reg, headers=AGENT, password="History-Pass-1")
    refreshed = await client.post("/user/refresh-token", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200
    replay = await client.post("/user/refresh-token", json={"refresh_token": pair["refresh_token"]})
    assert_problem(replay, 401)  # a replay: theft suspected, the session ends
    r = await client.post(
        "/user/me/password",
        json={"current_password": "History-Pass-1", "new_password": "History-Pass-2"},
        headers=bearer(reg["access_token"]),
    )
    assert r.status_code == 204
    await client.post("/user/logout", headers=bearer(reg["access_token"]))
    r = await client.patch(
        f"/admin/users/{uid}", json={"is_active": False}, headers=bearer(staff["access_token"])
    )
    assert r.status_code == 200
    assert await types_of(uid) == [
        events.ACCOUNT_DEACTIVATED,
        events.LOGOUT,
        events.PASSWORD_CHANGED,
        events.REFRESH_REUSE_DETECTED,
        events.LOGIN,
        events.LOGIN_FAILED,
        events.REGISTERED,
    ]
    login_event = await Event.get(user_id=uid, type=events.LOGIN)
    assert (login_event.user_agent, login_event.ip_address) == ("history-test/2.0", "203.0.113.7")


async def test_an_event_is_written_in_the_transaction_of_its_change(client, monkeypatch):
    """If the event cannot be written, the change is not made either (and the reverse)."""
    reg = await register(client)
    before = (await User.get(id=reg["user"]["id"])).password

    async def broken(*args, **kwargs):
        raise RuntimeError("the events table is unwritable")

    monkeypatch.setattr(events, "record", broken)
    r = await client.post(
        "/user/me/password",
        json={"current_password": PASSWORD, "new_password": "Never-Stored-1"},
        headers=bearer(reg["access_token"]),
    )
    assert r.status_code == 500
    assert (await User.get(id=reg["user"]["id"])).password == before  # the change rolled back with it
    monkeypatch.undo()
    # and a refused change records nothing
    r = await client.post(
        "/user/me/password",
        json={"current_password": "Wrong-Password-9", "new_password": "Never-Stored-2"},
        headers=bearer(reg["access_token"]),
    )
    assert_problem(r, 422)
    assert events.PASSWORD_CHANGED not in await types_of(reg["user"]["id"])


async def test_an_unknown_account_leaves_no_event(client):
    await events.drain()  # failed logins of earlier tests are written after their answers
    count = await Event.all().count()
    r = await client.post("/user/login", json={"email": "nobody-here@example.com", "password": "whatever-1"})
    assert_problem(r, 401)
    assert await Event.all().count() == count


async def test_the_history_pages_newest_first(client):
    reg = await register(client)
    for _ in range(3):
        await login(client, reg)
    auth = bearer(reg["access_token"])
    r = await client.get("/user/events", params={"page": 2, "page_size": 2}, headers=auth)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    page = r.json()
    assert (page["count"], page["page"], page["page_size"]) == (4, 2, 2)
    assert [e["type"] for e in page["results"]] == ["login", "registered"]
    assert set(page["results"][0]) == {"type", "at", "ip_address", "user_agent"}
    assert_problem(await client.get("/user/events", params={"page_size": 201}, headers=auth), 422)


async def test_staff_filter_the_history_and_it_outlives_the_account(client, staff):
    reg = await register(client)
    uid = reg["user"]["id"]
    await client.request(
        "DELETE", "/user/me", json={"password": PASSWORD}, headers=bearer(reg["access_token"])
    )
    r = await client.get(
        "/admin/events", params={"user_id": uid, "type": "registered"}, headers=bearer(staff["access_token"])
    )
    assert r.status_code == 200, r.text
    assert [(e["user_id"], e["type"]) for e in r.json()["results"]] == [(uid, "registered")]
    r = await client.get("/admin/events", params={"type": "password"}, headers=bearer(staff["access_token"]))
    assert r.status_code == 200 and r.json()["results"] == []  # a type nothing has: an empty page


async def test_clearevents_prunes_only_what_is_older_than_the_retention(client, monkeypatch):
    reg = await register(client)
    uid = reg["user"]["id"]
    monkeypatch.setattr(settings, "EVENT_RETENTION_DAYS", 30)
    await Event.create(user_id=uid, type="login", at=datetime.now(UTC) - timedelta(days=31))
    await Event.create(user_id=uid, type="login", at=datetime.now(UTC) - timedelta(days=29))
    assert await events.prune() >= 1
    assert await Event.filter(user_id=uid).count() == 2  # registered, and the 29-day-old login


# --- /.well-known/change-password ---------------------------------------------------------------------


@pytest.mark.parametrize("host", ["testserver", "localhost"])
async def test_the_change_password_url_sends_password_managers_to_the_spa(client, host):
    r = await client.get("/.well-known/change-password", headers={"Host": host})
    assert r.status_code == 302
    assert r.headers["location"] == f"{settings.FRONTEND_URL}/settings/password"


async def test_a_failed_login_answers_before_its_event_is_written(client, monkeypatch):
    """An unknown identifier leaves no event; so that a wrong password for an existing account does
    not answer later (a timing oracle for which accounts exist), its event is written afterwards."""
    import asyncio

    reg = await register(client)
    release = asyncio.Event()
    real_record = events.record

    async def slow_record(*args, **kwargs):
        await release.wait()  # the write cannot finish until the test has its answer
        await real_record(*args, **kwargs)

    monkeypatch.setattr(events, "record", slow_record)
    r = await asyncio.wait_for(
        client.post("/user/login", json={"email": reg["user"]["email"], "password": "Wrong-Password-7"}),
        timeout=10,
    )
    assert_problem(r, 401, "invalid_credentials")
    assert events.LOGIN_FAILED not in await types_of(reg["user"]["id"])
    release.set()
    await events.drain()
    assert (await types_of(reg["user"]["id"]))[0] == events.LOGIN_FAILED


async def test_a_change_the_staff_made_names_them_for_the_staff_and_hides_their_client(client, staff):
    reg = await register(client)
    uid = reg["user"]["id"]
    await login(client, reg)
    r = await client.delete(
        f"/admin/users/{uid}/sessions", headers={**bearer(staff["access_token"]), **AGENT}
    )
    assert r.json() == {"ended": 2}
    mine = await Event.get(user_id=uid, type=events.SESSION_REVOKED)
    assert (mine.actor_id, mine.user_agent, mine.ip_address) == (staff["id"], "staff", None)
    r = await client.get(
        "/admin/events",
        params={"user_id": uid, "type": "session_revoked"},
        headers=bearer(staff["access_token"]),
    )
    assert r.json()["results"][0]["actor_id"] == staff["id"]
    # ending nothing records nothing
    await client.delete(f"/admin/users/{uid}/sessions", headers=bearer(staff["access_token"]))
    assert await Event.filter(user_id=uid, type=events.SESSION_REVOKED).count() == 1


async def test_profile_and_permission_changes_are_recorded(client, superuser):
    reg = await register(client)
    uid = reg["user"]["id"]
    auth = bearer(reg["access_token"])
    r = await client.patch(
        "/user/me",
        json={"username": reg["user"]["username"] + "x"},
        headers=auth,
    )
    assert r.status_code == 200, r.text
    r = await client.patch(
        f"/admin/users/{uid}", json={"is_staff": True}, headers=bearer(superuser["access_token"])
    )
    assert r.status_code == 200, r.text
    r = await client.patch(
        f"/admin/users/{uid}", json={"is_active": False}, headers=bearer(superuser["access_token"])
    )
    r = await client.patch(
        f"/admin/users/{uid}", json={"is_active": True}, headers=bearer(superuser["access_token"])
    )
    await client.delete(f"/admin/users/{uid}", headers=bearer(superuser["access_token"]))
    assert (await types_of(uid))[:5] == [
        events.ACCOUNT_DELETED,
        events.ACCOUNT_ACTIVATED,
        events.ACCOUNT_DEACTIVATED,
        events.PERMISSIONS_CHANGED,
        events.USERNAME_CHANGED,
    ]


async def test_a_spent_token_of_an_expired_session_is_no_theft(client):
    reg = await register(client)
    pair = await login(client, reg)
    await client.post("/user/refresh-token", json={"refresh_token": pair["refresh_token"]})
    await Session.filter(user_id=reg["user"]["id"]).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    assert_problem(
        await client.post("/user/refresh-token", json={"refresh_token": pair["refresh_token"]}), 401
    )
    assert events.REFRESH_REUSE_DETECTED not in await types_of(reg["user"]["id"])


async def test_a_client_address_that_is_no_ip_address_is_stored_as_none(client):
    from apps.user.clients import Client

    assert Client(ip_address="fe80::1%eth0" + "0" * 60).ip_address == "fe80::1"
    assert Client(ip_address="/run/uvicorn.sock").ip_address is None
    assert Client(ip_address="2001:DB8::1").ip_address == "2001:db8::1"
