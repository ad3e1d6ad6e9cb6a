"""Changing the email (issue 8, point 4): with the password, through a link mailed to the new address,
a notice to the old one, and the unique rule decided when the link is used."""

import asyncio

from apps.user import authentication, events
from apps.user.models import Event, User
from tests.helpers import PASSWORD, assert_problem, bearer, register, unique
from tests.http.test_email_verification import link_token


def new_address() -> str:
    return f"{unique('n')}@example.com"


async def ask(client, account, email, password=PASSWORD):
    return await client.post(
        "/user/me/email", json={"email": email, "password": password}, headers=bearer(account["access_token"])
    )


async def test_the_link_goes_to_the_new_address_a_notice_to_the_old_and_the_email_changes_on_use(
    client, mailbox
):
    account = await register(client)
    old, new = account["user"]["email"], new_address()
    r = await ask(client, account, new.upper())
    assert r.status_code == 202, r.text
    await mailbox.deliver()
    to_new = mailbox.to(new)
    assert [m["Subject"] for m in to_new] == ["Confirm your new email address"]
    notice = mailbox.last_text(old)
    assert new in notice and "token=" not in notice
    user = await User.get(id=account["user"]["id"])
    assert (user.email, user.pending_email) == (old, new)  # nothing changed yet
    # the user object says what waits for its link (the SPA shows it)
    me = (await client.get("/user/me", headers=bearer(account["access_token"]))).json()
    assert (me["email"], me["pending_email"]) == (old, new)
    r = await client.post("/user/email/verify", json={"token": link_token(mailbox.text(to_new[0]))})
    assert r.status_code == 200, r.text
    assert (r.json()["email"], r.json()["email_verified"], r.json()["pending_email"]) == (new, True, None)
    user = await User.get(id=account["user"]["id"])
    assert (user.email, user.pending_email, user.email_verified) == (new, None, True)
    # the old address is told once more, and no longer logs in
    await mailbox.deliver()
    assert mailbox.to(old)[-1]["Subject"] == "Your email address was changed"
    assert (await client.post("/user/login", json={"email": new, "password": PASSWORD})).status_code == 200
    assert_problem(await client.post("/user/login", json={"email": old, "password": PASSWORD}), 401)
    kinds = await Event.filter(user_id=user.id).order_by("id").values_list("type", flat=True)
    assert events.EMAIL_CHANGE_REQUESTED in kinds and events.EMAIL_CHANGED in kinds


async def test_request_user_shows_the_new_email_at_once(client, mailbox):
    """request.user, cached per worker for each live session, carries the email: using the link must
    reach every worker's cache (the revocation signal's version moves), as a username change does."""
    account = await register(client)
    auth = bearer(account["access_token"])
    authenticator = authentication.authenticator()
    user = await authenticator.user_for_token(account["access_token"])
    assert user.email == account["user"]["email"]
    new = new_address()
    await ask(client, account, new)
    await mailbox.deliver()
    await client.post("/user/email/verify", json={"token": link_token(mailbox.last_text(new))})
    assert (await authenticator.user_for_token(account["access_token"])).email == new
    assert (await client.get("/user/verify", headers=auth)).status_code == 204


async def test_a_wrong_password_changes_nothing_and_mails_nothing(client, mailbox):
    account = await register(client)
    await mailbox.deliver()
    before = len(mailbox.messages)
    r = await ask(client, account, new_address(), password="Wrong-passw0rd-1")
    assert assert_problem(r, 422)["errors"][0]["field"] == "password"
    await mailbox.deliver()
    assert len(mailbox.messages) == before
    assert (await User.get(id=account["user"]["id"])).pending_email is None


async def test_the_current_address_is_refused_and_a_taken_one_is_a_conflict(client):
    account = await register(client)
    r = await ask(client, account, account["user"]["email"].upper())
    assert assert_problem(r, 422)["errors"][0]["field"] == "email"
    other = await register(client)
    r = await ask(client, account, other["user"]["email"])
    assert assert_problem(r, 409)["errors"][0]["field"] == "email"
    r = await ask(client, account, "not an address")
    assert assert_problem(r, 422)["errors"][0]["field"] == "email"


async def test_a_newer_request_spends_the_older_link(client, mailbox):
    account = await register(client)
    first, second = new_address(), new_address()
    await ask(client, account, first)
    await ask(client, account, second)
    await mailbox.deliver()
    stale = link_token(mailbox.last_text(first))
    assert_problem(await client.post("/user/email/verify", json={"token": stale}), 400, "invalid_link")
    r = await client.post("/user/email/verify", json={"token": link_token(mailbox.last_text(second))})
    assert r.json()["email"] == second


async def test_resend_goes_to_the_pending_address(client, mailbox):
    account = await register(client)
    new = new_address()
    await ask(client, account, new)
    await mailbox.deliver()
    r = await client.post("/user/email/verification", headers=bearer(account["access_token"]))
    assert r.status_code == 202
    await mailbox.deliver()
    assert len(mailbox.to(new)) == 2


async def test_an_address_taken_while_the_link_waited_is_a_conflict_and_changes_nothing(client, mailbox):
    account = await register(client)
    new = new_address()
    await ask(client, account, new)
    await mailbox.deliver()
    token = link_token(mailbox.last_text(new))
    await register(client, email=new)  # somebody registers the address first
    r = await client.post("/user/email/verify", json={"token": token})
    assert assert_problem(r, 409)["errors"][0]["field"] == "email"
    user = await User.get(id=account["user"]["id"])
    assert (user.email, user.pending_email) == (account["user"]["email"], new)


async def test_two_accounts_confirming_one_address_at_once_leave_one_winner(client, mailbox):
    new = new_address()
    tokens = []
    accounts = [await register(client) for _ in range(2)]
    for account in accounts:
        assert (await ask(client, account, new)).status_code == 202
    await mailbox.deliver()
    tokens = [link_token(mailbox.text(m)) for m in mailbox.to(new)]
    assert len(tokens) == 2
    answers = await asyncio.gather(*[client.post("/user/email/verify", json={"token": t}) for t in tokens])
    assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
    assert await User.filter(email=new).count() == 1


async def test_a_password_change_a_reset_or_a_deactivation_cancels_a_pending_change(
    client, mailbox, superuser
):
    """Whoever knows the password asks to move the account to their address; the owner, warned by the
    notice, changes the password (or resets it, or the staff deactivate the account): the attacker's
    link must be dead, or it would hand them the account."""

    async def attacked():
        account = await register(client)
        evil = new_address()
        assert (await ask(client, account, evil)).status_code == 202
        await mailbox.deliver()
        return account, link_token(mailbox.last_text(evil))

    account, token = await attacked()
    r = await client.post(
        "/user/me/password",
        json={"current_password": PASSWORD, "new_password": "Owner-took-it-back-1"},
        headers=bearer(account["access_token"]),
    )
    assert r.status_code == 204
    assert_problem(await client.post("/user/email/verify", json={"token": token}), 400, "invalid_link")
    assert (await User.get(id=account["user"]["id"])).pending_email is None

    account, token = await attacked()
    await client.post("/user/password/reset", json={"email": account["user"]["email"]})
    await mailbox.deliver()
    from tests.http.test_password_reset import reset_token

    reset = reset_token(mailbox.last_text(account["user"]["email"]))
    r = await client.post(
        "/user/password/reset/confirm", json={"token": reset, "new_password": "Owner-reset-it-1"}
    )
    assert r.status_code == 204
    assert_problem(await client.post("/user/email/verify", json={"token": token}), 400, "invalid_link")

    account, token = await attacked()
    uid = account["user"]["id"]
    staff = bearer(superuser["access_token"])
    assert (
        await client.patch(f"/admin/users/{uid}", json={"is_active": False}, headers=staff)
    ).status_code == 200
    assert_problem(await client.post("/user/email/verify", json={"token": token}), 400, "invalid_link")
    assert (
        await client.patch(f"/admin/users/{uid}", json={"is_active": True}, headers=staff)
    ).status_code == 200
    assert_problem(await client.post("/user/email/verify", json={"token": token}), 400, "invalid_link")
    assert (await User.get(id=uid)).email == account["user"]["email"]


async def test_a_replaced_link_stays_dead_when_the_same_address_is_asked_for_again(client, mailbox):
    account = await register(client)
    b, c = new_address(), new_address()
    await ask(client, account, b)
    await mailbox.deliver()
    first = link_token(mailbox.last_text(b))
    await ask(client, account, c)
    await ask(client, account, b)
    assert_problem(await client.post("/user/email/verify", json={"token": first}), 400, "invalid_link")
    await mailbox.deliver()
    r = await client.post("/user/email/verify", json={"token": link_token(mailbox.last_text(b))})
    assert r.status_code == 200 and r.json()["email"] == b
