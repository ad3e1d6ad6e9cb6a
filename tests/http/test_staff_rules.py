"""Who may change whom: a staff member who is not a superuser cannot grant or remove staff, nor
deactivate or delete another staff member; the last active superuser stays one. The same rules hold
in manage.py (accounts.py owns them)."""

import asyncio

import pytest

from apps.user import accounts
from apps.user.exceptions import LastSuperuser, WrongPassword
from apps.user.models import User
from tests.helpers import PASSWORD, assert_problem, bearer, logged_in_account, register


@pytest.fixture
async def only_superuser(client):
    """A superuser who is, for the length of the test, the only active one."""
    me = await logged_in_account(client, is_staff=True, is_superuser=True)
    others = (
        await User.filter(is_superuser=True, is_active=True).exclude(id=me["id"]).values_list("id", flat=True)
    )
    await User.filter(id__in=others).update(is_active=False)
    yield me
    await User.filter(id__in=others).update(is_active=True)


async def patch(client, who, target_id, body):
    return await client.patch(f"/admin/users/{target_id}", json=body, headers=bearer(who["access_token"]))


@pytest.mark.parametrize("grant", [True, False])
async def test_a_staff_member_cannot_grant_or_remove_staff(client, staff, grant):
    target = await logged_in_account(client, is_staff=not grant)
    assert_problem(await patch(client, staff, target["id"], {"is_staff": grant}), 403, "permission_denied")
    assert (await User.get(id=target["id"])).is_staff is (not grant)


async def test_a_staff_member_cannot_deactivate_or_delete_another_staff_member(client, staff):
    colleague = await logged_in_account(client, is_staff=True)
    assert_problem(await patch(client, staff, colleague["id"], {"is_active": False}), 403)
    r = await client.delete(f"/admin/users/{colleague['id']}", headers=bearer(staff["access_token"]))
    assert_problem(r, 403)
    colleague_now = await User.get(id=colleague["id"])
    assert colleague_now.is_active and colleague_now.is_staff
    assert (await client.get("/user/me", headers=bearer(colleague["access_token"]))).status_code == 200


async def test_a_staff_member_still_manages_ordinary_accounts(client, staff):
    target = await register(client)
    assert (await patch(client, staff, target["user"]["id"], {"is_active": False})).status_code == 200
    r = await client.delete(f"/admin/users/{target['user']['id']}", headers=bearer(staff["access_token"]))
    assert r.status_code == 204


async def test_a_superuser_grants_and_removes_staff(client, only_superuser):
    target = await register(client)
    r = await patch(client, only_superuser, target["user"]["id"], {"is_staff": True})
    assert r.status_code == 200 and r.json()["is_staff"] is True
    r = await patch(client, only_superuser, target["user"]["id"], {"is_staff": False})
    assert r.status_code == 200 and r.json()["is_staff"] is False


@pytest.mark.parametrize("change", [{"is_superuser": False}, {"is_active": False}, {"is_staff": False}])
async def test_the_last_active_superuser_cannot_demote_or_deactivate_itself(client, only_superuser, change):
    assert_problem(await patch(client, only_superuser, only_superuser["id"], change), 409, "last_superuser")
    me = await User.get(id=only_superuser["id"])
    assert me.is_superuser and me.is_active


async def test_the_last_active_superuser_cannot_delete_itself(client, only_superuser):
    auth = bearer(only_superuser["access_token"])
    assert_problem(
        await client.delete(f"/admin/users/{only_superuser['id']}", headers=auth), 409, "last_superuser"
    )
    r = await client.request("DELETE", "/user/me", json={"password": PASSWORD}, headers=auth)
    assert_problem(r, 409, "last_superuser")
    assert await User.exists(id=only_superuser["id"])


async def test_with_a_second_superuser_one_may_step_down(client, only_superuser):
    second = await logged_in_account(client, is_staff=True, is_superuser=True)
    r = await patch(client, only_superuser, only_superuser["id"], {"is_superuser": False})
    assert r.status_code == 200, r.text
    # now `second` is the last one
    assert_problem(await patch(client, second, second["id"], {"is_active": False}), 409, "last_superuser")
    await User.filter(id=only_superuser["id"]).update(is_superuser=True)


async def test_two_superusers_demoting_each_other_at_once_leave_one(client, only_superuser, backend):
    second = await logged_in_account(client, is_staff=True, is_superuser=True)
    a, b = await asyncio.gather(
        patch(client, only_superuser, second["id"], {"is_superuser": False}),
        patch(client, second, only_superuser["id"], {"is_superuser": False}),
    )
    # The first to commit wins; the other either finds itself demoted (403) or is the last one (409).
    assert sorted([a.status_code, b.status_code])[0] == 200 and sorted([a.status_code, b.status_code])[1] in {
        403,
        409,
    }
    assert await User.filter(id__in=[only_superuser["id"], second["id"]], is_superuser=True).count() == 1


async def test_the_rule_holds_for_an_operator_too(client, only_superuser):
    """manage.py acts as the operator (no acting user): the last superuser stays, whoever asks."""
    me = await User.get(id=only_superuser["id"])
    with pytest.raises(LastSuperuser):
        await accounts.set_flags(None, me, client=None, is_active=False)
    with pytest.raises(LastSuperuser):
        await accounts.delete_user(None, me, None)
    with pytest.raises(LastSuperuser):
        await accounts.import_accounts([], [(me.id, {"is_superuser": False})])
    assert (await User.get(id=me.id)).is_superuser


async def test_a_superuser_without_staff_status_does_not_count_as_another_one(client, only_superuser):
    """Without is_staff the staff API is closed to it: it cannot stand in for the last one."""
    await logged_in_account(client, is_staff=False, is_superuser=True)
    assert_problem(
        await patch(client, only_superuser, only_superuser["id"], {"is_superuser": False}),
        409,
        "last_superuser",
    )


async def test_a_staff_member_touching_a_superuser_is_refused_even_when_nothing_would_change(
    client, staff, superuser
):
    r = await patch(client, staff, superuser["id"], {"is_active": True})
    assert_problem(r, 403, "permission_denied")


async def test_a_demoted_staff_member_cannot_act_on_a_token_issued_before(client, superuser):
    """The rules are checked on the rows inside the transaction, not on request.user as cached."""
    colleague = await logged_in_account(client, is_staff=True)
    target = await register(client)
    assert (await client.get("/admin/users", headers=bearer(colleague["access_token"]))).status_code == 200
    # demoted behind the caches' back (as by a change committing while the request runs)
    await User.filter(id=colleague["id"]).update(is_staff=False)
    r = await patch(client, colleague, target["user"]["id"], {"is_active": False})
    assert_problem(r, 403, "permission_denied")
    assert (await User.get(id=target["user"]["id"])).is_active


async def test_deleting_ones_account_after_a_password_change_committed_is_refused(client):
    reg = await register(client)
    user = await User.get(id=reg["user"]["id"])
    await User.filter(id=user.id).update(password="!changed-meanwhile")
    with pytest.raises(WrongPassword):
        await accounts.delete_user(user, user, None, expected_password=user.password)
    assert await User.exists(id=user.id)
