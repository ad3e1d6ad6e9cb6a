"""Account rules: registration, authentication and login, profile, passwords, flags, deletion.

Every function takes plain values and returns models or raises an exceptions.AccountError; none knows
about HTTP, so manage.py commands call them too and the same rules hold there. Sessions are started
and ended through sessions.py only.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

import settings
from apps.mail import outbox
from apps.user import events, mails, mfa, password_policy, passwords, sessions, usernames
from apps.user.clients import STAFF, Client
from apps.user.exceptions import (
    EmailUnverified,
    InvalidCredentials,
    LastSuperuser,
    NotAllowed,
    Taken,
    UserNotFound,
    WrongPassword,
)
from apps.user.models import UNUSABLE_PASSWORD_PREFIX, User, normalize_email, username_key
from apps.user.sessions import IssuedTokens


async def _taken(username: str | None, email: str | None) -> Taken:
    """Name the taken field(s) after a unique index refused an insert or update."""
    errors = []
    if username is not None and await User.filter(username_key=username_key(username)).exists():
        errors.append({"field": "username", "message": "This username is already taken."})
    if email is not None and await User.filter(email=normalize_email(email)).exists():
        errors.append({"field": "email", "message": "An account with this email already exists."})
    return Taken(errors=errors or None)


async def register(
    username: str, email: str, password: str, client: Client
) -> tuple[User, IssuedTokens | None]:
    """Create an account, mail a verification link (unless EMAIL_VERIFICATION is none) and log the
    account in, except with EMAIL_VERIFICATION mandatory: then no session until the address is verified.

    No look-up first: the unique indexes decide, so two concurrent registrations cannot both win.

    Raises:
        Taken: the username or email is taken (case-insensitively), or the username looks like one
            that is (the Unicode TR39 skeleton: "аdmin" with a Cyrillic "а" is "admin").
        WeakPassword: the password breaks the policy (password_policy.py).
    """
    await usernames.refuse_confusable(username, email)
    await password_policy.validate(password, field="password", username=username, email=email)
    password_hash = await passwords.hash_password(password)
    try:
        async with in_transaction():
            user = await User.create(
                username=username,
                username_key=username_key(username),
                username_skeleton=usernames.username_skeleton(username),
                email=normalize_email(email),
                password=password_hash,
            )
            await events.record(events.REGISTERED, user.id, client, at=user.date_joined)
            if settings.EMAIL_VERIFICATION != "none":
                await mails.queue(mails.verification(user))
            issued = None
            if settings.EMAIL_VERIFICATION != "mandatory":
                issued = await sessions.start(
                    user, client, checked_password=password_hash, now=user.date_joined, event=None
                )
    except IntegrityError:
        await usernames.refuse_confusable(username, email)  # a look-alike won the race
        raise await _taken(username, email) from None
    outbox.wake()
    return user, issued


async def create_user(
    username: str, email: str, password: str | None, *, is_staff: bool = False, is_superuser: bool = False
) -> User:
    """An account without a session (manage.py createsuperuser). No password: an unusable one, as Django does.

    Raises:
        Taken: the username or email is taken, or the username looks like one that is.
    """
    await usernames.refuse_confusable(username, email)
    if password:
        await password_policy.validate(password, field="password", username=username, email=email)
    password_hash = (
        await passwords.hash_password(password)
        if password
        else UNUSABLE_PASSWORD_PREFIX + secrets.token_urlsafe(30)
    )
    try:
        return await User.create(
            username=username,
            username_key=username_key(username),
            username_skeleton=usernames.username_skeleton(username),
            email=normalize_email(email),
            password=password_hash,
            is_staff=is_staff,
            is_superuser=is_superuser,
        )
    except IntegrityError:
        await usernames.refuse_confusable(username, email)
        raise await _taken(username, email) from None


def _fits(lookup: str, key: str) -> bool:
    """An identifier longer than its column names nobody (and Tortoise refuses it before querying)."""
    return len(key) <= User._meta.fields_map[lookup].max_length


async def _account_named(key: str, lookup: str, email: str | None) -> User | None:
    """The account an identifier names. An `email` that is no account's address may be a username
    with an @ in it (Django allows them, and sites that used the address as the username have them
    after the address changed): one form field, "email or username", then finds it. The address
    wins; both are one indexed query, so a miss costs what a hit does."""
    accounts = User.annotate(**mfa.SECOND_FACTORS)  # what the login asks next, in the same query
    if email is None or "@" not in email:
        return await accounts.get_or_none(**{lookup: key}) if _fits(lookup, key) else None
    names = [
        Q(**{name: value})
        for name, value in (("email", key), ("username_key", username_key(email)))
        if _fits(name, value)
    ]
    found = await accounts.filter(Q(*names, join_type=Q.OR)).limit(2) if names else []
    return next((u for u in found if u.email == key), found[0] if found else None)


def login_key(email: str | None, username: str | None) -> str:
    """What a login attempt is counted (throttles) and serialised (one password check at a time) under:
    the identifier folded as usernames are (NFKC, case-folded). Every spelling that can reach one
    account, an address or a username spelled like one (the email field finds both), is one key."""
    return username_key(email if email is not None else username or "")


async def authenticate(
    password: str, client: Client | None = None, *, email: str | None = None, username: str | None = None
) -> User:
    """The active user with these credentials; the hash is upgraded if the policy moved on.

    Unknown account, wrong password and inactive account fail alike, in the same time. The returned
    user's `password` is the hash that was checked: sessions.start() opens a session only if it is
    still the stored one; it also says which second factors the account has (mfa.SECOND_FACTORS).
    A failure for an existing account goes into its history (login_failed).

    Raises:
        InvalidCredentials: whatever the reason.
    """
    if email is not None:
        key, lookup = normalize_email(email), "email"
    else:
        key, lookup = username_key(username or ""), "username_key"
    user = await _account_named(key, lookup, email)
    # Keyed by the identifier (folded, login_key), not the user id: a 503 for "one check in flight"
    # must not tell whether an identifier exists, or whether an email and a username are one account.
    account = ("login", login_key(email, username))
    if user is None:
        await passwords.burn_password_check(password, account=account)
        raise InvalidCredentials()
    # No upgrade for an inactive account: computing the new hash would make a right password answer
    # slower.
    matches, upgraded_hash = await passwords.verify_password(
        password, user.password, account=account, upgrade=user.is_active
    )
    if not matches or not user.is_active:
        # Not for an address that found a username spelled like it: anybody may take a username that
        # is somebody else's (old) address, and must not collect that person's failed logins (their
        # IP and browser) in its own history.
        if lookup == "username_key" or user.email == key:
            events.record_soon(events.LOGIN_FAILED, user.id, client)  # not now: timing (see there)
        raise InvalidCredentials()
    if upgraded_hash:
        # Only the password column, and only if nobody changed it meanwhile.
        if await User.filter(id=user.id, password=user.password).update(password=upgraded_hash):
            user.password = upgraded_hash
    return user


async def login(
    password: str, client: Client, *, email: str | None = None, username: str | None = None
) -> IssuedTokens | mfa.SecondFactorRequired:
    """Check the credentials and start a session, unless the account changed in between; for an
    account with a second factor, no session yet but the login attempt that waits for it (mfa.py).

    With EMAIL_VERIFICATION mandatory, the right password to an account whose address is not verified
    mails a new link instead (only to the account's own address: a caller who knows the password
    learns nothing else).

    Raises:
        InvalidCredentials: wrong credentials, or the account changed since they were checked.
        EmailUnverified: mandatory verification, and the address is not verified yet.
    """
    user = await authenticate(password, client, email=email, username=username)
    if settings.EMAIL_VERIFICATION == "mandatory" and not user.email_verified:
        await mails.queue(mails.verification(user))
        outbox.wake()
        raise EmailUnverified()
    waiting = mfa.second_factor_required(user)
    if waiting is not None:
        return waiting
    return await sessions.start(user, client, checked_password=user.password)


async def update_profile(user: User, client: Client, *, username: str | None = None) -> User:
    """Change the username. (The email changes only through a link mailed to the new address:
    verification.request_email_change.)

    Raises:
        Taken: the new username belongs to another account, or looks like one that does.
    """
    if username is None or username == user.username:
        return user
    await usernames.refuse_confusable(username, None, user_id=user.id, current_key=user.username_key)
    user.username_skeleton = usernames.skeleton_after_rename(user, username)
    user.username, user.username_key = username, username_key(username)
    try:
        async with sessions.ending() as end:
            await user.save(update_fields=["username", "username_key", "username_skeleton"])
            await events.record(events.USERNAME_CHANGED, user.id, client)
            end.account_changed(user.id)  # request.user shows the username
    except IntegrityError:
        await usernames.refuse_confusable(username, None, user_id=user.id)
        raise await _taken(username, None) from None
    return user


@dataclass(frozen=True, slots=True)
class Confirmation:
    """How the owner confirms a sensitive change (deleting the account, changing the email, turning a
    second factor off, removing a passkey): the password, or, for an account without a usable
    password, a fresh passkey answer to this session's reauthentication options (passkeys.py)."""

    password: str | None = None
    passkey: dict | None = None
    session_id: str | None = None


async def confirm_owner(user: User, confirmation: Confirmation) -> None:
    """Raises:
    WrongPassword: the password is wrong.
    InvalidInput: a passkey answer from an account that has a password (it confirms with it).
    PasskeyRejected: the passkey answer does not verify."""
    if confirmation.passkey is not None:
        from apps.user import passkeys  # passkeys.py builds on this module

        await passkeys.confirm_with_passkey(user, confirmation.session_id or "", confirmation.passkey)
    else:
        await confirm_password(user, confirmation.password or "", "password")


async def confirm_password(user: User, password: str, field: str) -> None:
    """The password confirming a sensitive change (an email change, a deletion) is the account's.

    Raises:
        WrongPassword: it is not.
    """
    matches, _ = await passwords.verify_password(password, user.password, account=user.id, upgrade=False)
    if not matches:
        raise WrongPassword(field)


# A password change (or reset, or an operator's) cancels a pending email change: it is what the
# notice tells an owner who did not ask for the change to do (verification.py).
_CANCEL_EMAIL_CHANGE = {"pending_email": None, "pending_email_at": None}


async def store_password_hash(
    user: User,
    new_hash: str,
    client: Client | None,
    *,
    expected: dict | None,
    keep_session_id: str | None = None,
    event: str = events.PASSWORD_CHANGED,
    also: dict | None = None,
    also_events: tuple[str, ...] = (),
) -> int | None:
    """Store a new hash (and the columns in `also`), cancel a pending email change and end the user's
    sessions (all but `keep_session_id`), with `event` (and `also_events`), in one transaction;
    returns how many sessions ended. None, and nothing written, if the row no longer has the
    `expected` values: so of two changes confirmed with the same old state (password, reset link),
    one wins.
    """
    async with sessions.ending() as end:
        changed = await User.filter(id=user.id, **(expected or {})).update(
            password=new_hash, **_CANCEL_EMAIL_CHANGE, **(also or {})
        )
        if not changed:
            return None
        ended = await end.user_sessions(user.id, event, except_session_id=keep_session_id)
        end.profile_changed(user.id)  # the kept session's user object: no pending email
        for kind in (event, *also_events):
            await events.record(kind, user.id, client)
    user.password = new_hash
    user.pending_email = user.pending_email_at = None
    return ended


async def change_password(
    user: User, current_password: str, new_password: str, client: Client, *, keep_session_id: str
) -> None:
    """Set a new password and end every other session of the user.

    Raises:
        WrongPassword: `current_password` is wrong (or was changed meanwhile).
        WeakPassword: `new_password` breaks the policy.
    """
    await confirm_password(user, current_password, "current_password")
    await password_policy.validate(
        new_password, field="new_password", username=user.username, email=user.email
    )
    new_hash = await passwords.hash_password(new_password)
    stored = await store_password_hash(
        user, new_hash, client, expected={"password": user.password}, keep_session_id=keep_session_id
    )
    if stored is None:
        raise WrongPassword("current_password")


async def set_password(user: User, new_password: str) -> int:
    """Set a password without the old one (manage.py changepassword); every session ends at once.

    Raises:
        WeakPassword: the password breaks the policy.
    """
    await password_policy.validate(new_password, field="password", username=user.username, email=user.email)
    new_hash = await passwords.hash_password(new_password)
    return await store_password_hash(user, new_hash, None, expected=None) or 0


async def delete_account(user: User, confirmation: Confirmation, client: Client) -> None:
    """Delete one's own account; its sessions go with it (ON DELETE CASCADE), its tokens die at once.

    Only if the password is still the one confirmed: a password change that commits in between (and
    ends the caller's session) is not overtaken by the deletion.

    Raises:
        WrongPassword: `password` is wrong, or was changed meanwhile.
        LastSuperuser: it is the last active superuser.
    """
    await confirm_owner(user, confirmation)
    await delete_user(user, user, client, expected_password=user.password)


# --- staff rules ----------------------------------------------------------------------------------
# Who may change whom, in one place for the staff API and manage.py. `actor` is the user acting
# (request.user), or None for an operator at the server's shell, who may do anything the
# last-superuser rule allows. The rules are checked on the rows as they are inside the changing
# transaction (locked), not as they were when the request began: a demotion that committed a moment
# ago counts.


def _id(actor) -> int | None:
    return actor.id if actor is not None else None


def _by(actor, target_id: int, client: Client | None) -> Client | None:
    """The client an event shows its owner: theirs when they acted themselves; when a staff member
    did, not the staff member's address and browser (the event's actor_id names them, for the staff)."""
    return STAFF if actor is not None and actor.id != target_id else client


def _flag_events(changes: dict[str, bool]) -> list[str]:
    kinds = []
    if "is_active" in changes:
        kinds.append(
            events.ACCOUNT_DEACTIVATED if changes["is_active"] is False else events.ACCOUNT_ACTIVATED
        )
    if "is_staff" in changes or "is_superuser" in changes:
        kinds.append(events.PERMISSIONS_CHANGED)
    return kinds


# Who can use the staff API with every right: the service must keep one.
_ADMINISTRATOR = {"is_superuser": True, "is_staff": True, "is_active": True}


def _is_administrator(flags) -> bool:
    return all(getattr(flags, name) for name in _ADMINISTRATOR)


async def _locked(*user_ids: int) -> dict[int, User]:
    """These users' rows and every administrator's, locked for the rest of the transaction.

    Always in id order (PostgreSQL; SQLite has one writer anyway), so two changes wait for each other
    instead of deadlocking: two superusers demoting each other at once cannot both succeed. Models,
    not values_list(): Tortoise drops FOR UPDATE from a values query.
    """
    rows = await User.filter(Q(id__in=user_ids) | Q(**_ADMINISTRATOR)).order_by("id").select_for_update()
    return {row.id: row for row in rows}


def _check_actor(actor, rows: dict[int, User], target: User, changes: dict[str, bool]) -> None:
    if actor is None:
        return
    acting = rows.get(actor.id)
    if acting is None or not (acting.is_active and acting.is_staff):
        raise NotAllowed("Your account may no longer use the staff tools.")
    if acting.is_superuser:
        return
    if "is_superuser" in changes:
        raise NotAllowed("Only a superuser may change is_superuser.")
    if "is_staff" in changes:
        raise NotAllowed("Only a superuser may grant or remove staff status.")
    if target.is_superuser:
        raise NotAllowed("Only a superuser may change a superuser's account.")
    if target.is_staff and target.id != acting.id:
        raise NotAllowed("Only a superuser may change, deactivate or delete another staff member.")


def _keep_an_administrator(rows: dict[int, User], target: User, *, remains: bool) -> None:
    """Refuse a change after which no active superuser with staff status would be left.

    Raises:
        LastSuperuser: `target` is the last one and would not remain one.
    """
    if _is_administrator(target) and not remains:
        if not any(_is_administrator(row) for user_id, row in rows.items() if user_id != target.id):
            raise LastSuperuser()


async def set_flags(
    actor,
    user: User,
    *,
    client: Client | None,
    is_active: bool | None = None,
    is_staff: bool | None = None,
    is_superuser: bool | None = None,
) -> User:
    """Change an account's flags. Deactivation ends every session at once; any change reaches
    request.user in every worker at once.

    Raises:
        UserNotFound: the account was deleted meanwhile.
        NotAllowed: the actor may not make this change (staff rules above).
        LastSuperuser: it would leave no active superuser with staff status.
    """
    asked = {"is_active": is_active, "is_staff": is_staff, "is_superuser": is_superuser}
    async with sessions.ending() as end:
        rows = await _locked(user.id, *([actor.id] if actor is not None else []))
        target = rows.get(user.id)
        if target is None:
            raise UserNotFound()
        changes = {
            name: value
            for name, value in asked.items()
            if value is not None and value != getattr(target, name)
        }
        _check_actor(actor, rows, target, changes)  # also when nothing changes: the answer must not tell
        if not changes:
            return target
        after = {name: changes.get(name, getattr(target, name)) for name in _ADMINISTRATOR}
        _keep_an_administrator(rows, target, remains=all(after.values()))
        if changes.get("is_active") is False:
            await User.filter(id=target.id).update(**changes, **_CANCEL_EMAIL_CHANGE)
            await end.user_sessions(target.id, "deactivated")
        else:
            await User.filter(id=target.id).update(**changes)
        for kind in _flag_events(changes):
            await events.record(kind, target.id, _by(actor, target.id, client), actor_id=_id(actor))
        end.account_changed(target.id)
    for name, value in changes.items():
        setattr(target, name, value)
    return target


async def delete_user(
    actor, user: User, client: Client | None, *, expected_password: str | None = None
) -> None:
    """Delete an account; its sessions go with it, its tokens die at once.

    Raises:
        UserNotFound: the account was deleted meanwhile.
        NotAllowed: the actor may not delete this account.
        LastSuperuser: it is the last active superuser with staff status.
        WrongPassword: with `expected_password`, the stored password is another one by now.
    """
    async with sessions.ending() as end:
        rows = await _locked(user.id, *([actor.id] if actor is not None else []))
        target = rows.get(user.id)
        if target is None:
            raise UserNotFound()
        if actor is not None and actor.id != target.id:  # anybody may delete their own account
            _check_actor(actor, rows, target, {})
        _keep_an_administrator(rows, target, remains=False)
        doomed = User.filter(id=target.id)
        if expected_password is not None:
            doomed = doomed.filter(password=expected_password)
        if not await doomed.delete():
            raise WrongPassword("password")
        await events.record(
            events.ACCOUNT_DELETED, target.id, _by(actor, target.id, client), actor_id=_id(actor)
        )
        end.account_changed(target.id)


async def end_sessions(actor, user: User, client: Client | None) -> int:
    """End every session of a user (staff tools); returns how many were live.

    Raises:
        NotAllowed: the actor may not act on this account (staff rules above).
    """
    async with sessions.ending() as end:
        rows = await _locked(user.id, *([actor.id] if actor is not None else []))
        target = rows.get(user.id)
        if target is None:
            raise UserNotFound()
        if actor is not None and actor.id != target.id:
            _check_actor(actor, rows, target, {})
        ended = await end.user_sessions(target.id, events.SESSION_REVOKED)
        if ended:
            await events.record(
                events.SESSION_REVOKED, target.id, _by(actor, target.id, client), actor_id=_id(actor)
            )
        return ended


async def reset_second_factors(actor, user: User, client: Client | None) -> int:
    """Remove every second factor of a user who lost them (staff tools, manage.py reset_mfa): their
    next login needs the password alone. Audited: the history shows each removal and who made it.
    Sessions stay: nothing about them changed. Returns how many factors went.

    Raises:
        UserNotFound: the account was deleted meanwhile.
        NotAllowed: the actor may not act on this account (staff rules above).
    """
    async with in_transaction():
        rows = await _locked(user.id, *([actor.id] if actor is not None else []))
        target = rows.get(user.id)
        if target is None:
            raise UserNotFound()
        if actor is not None and actor.id != target.id:
            _check_actor(actor, rows, target, {})
        return await mfa.remove_every_factor(target.id, _by(actor, target.id, client), actor_id=_id(actor))


async def import_accounts(creates: list[dict], updates: list[tuple[int, dict]]) -> None:
    """Write what django_import.py decided, in one transaction. An update that deactivates an account
    or replaces its password ends its sessions, as the same change made here would; one that would
    leave no active superuser is refused, as it is through the staff API.

    Raises:
        LastSuperuser: the import would demote or deactivate the last active superuser.
    """
    async with sessions.ending() as end:
        had_superuser = await User.filter(**_ADMINISTRATOR).exists()
        await User.bulk_create([User(**values) for values in creates])
        for user_id, changed in updates:
            await User.filter(id=user_id).update(**changed)
            if changed.get("is_active") is False or "password" in changed:
                await end.user_sessions(user_id, "changed_by_import")
            if "password" in changed:
                await events.record(events.PASSWORD_CHANGED, user_id, None)
            if changed.get("email_verified") is True:  # allauth verified it since the last import
                await events.record(events.EMAIL_VERIFIED, user_id, None)
            for kind in _flag_events({k: v for k, v in changed.items() if k in _ADMINISTRATOR}):
                await events.record(kind, user_id, None)
            end.account_changed(user_id)
        if had_superuser and not await User.filter(**_ADMINISTRATOR).exists():
            raise LastSuperuser("The import would leave no active superuser; nothing was written.")
