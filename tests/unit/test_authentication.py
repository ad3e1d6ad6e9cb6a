"""The authenticator's caches with a fake clock, a fake session store and an in-process signal: no
database, no sleeps."""

import jwt
import pytest

import settings
from apps.user import tokens
from apps.user.authentication import AuthenticatedUser, Authenticator, TokenRefused
from apps.user.revocation import ProcessEpoch, Revocation

SESSION = "6f1c1a52-7a55-4b53-9d5a-2b1b6f0c9a11"


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Store:
    """Sessions as the database would answer for them; counts the look-ups."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.expires_at = clock.now + 3600
        self.live = True
        self.lookups = 0

    async def load(self, user_id: int, session_id: str) -> AuthenticatedUser | None:
        self.lookups += 1
        if not self.live or self.expires_at <= self.clock.now:
            return None
        return AuthenticatedUser(
            id=user_id,
            username="ann",
            email="ann@example.com",
            is_staff=False,
            is_superuser=False,
            session_id=session_id,
            session_expires_at=self.expires_at,
        )


@pytest.fixture
def world():
    import time

    clock = FakeClock(time.time())
    store = Store(clock)
    signal = Revocation(ProcessEpoch(), None)
    return clock, store, signal, Authenticator(signal, store.load, clock)


def token_for(clock: FakeClock, lifetime: int = 900) -> str:
    claims = jwt.decode(
        tokens.issue_access_token(7, SESSION),
        options={"verify_signature": False},
        audience=settings.JWT_AUDIENCE,
    )
    claims["exp"] = int(clock.now) + lifetime
    return jwt.encode(
        claims, settings.SECRET_KEY, algorithm=settings.JWT_ALGORITHM, headers={"typ": "at+jwt"}
    )


async def test_a_cached_session_needs_no_lookup_until_the_signal_moves(world):
    clock, store, signal, auth = world
    token = token_for(clock)
    assert (await auth.user_for_token(token)).id == 7
    assert (await auth.user_for_token(token)).id == 7
    assert store.lookups == 1
    store.live = False  # ended where this worker could not see it
    assert (await auth.user_for_token(token)).id == 7  # the cache is real
    await signal.publish(sessions=[SESSION])
    with pytest.raises(TokenRefused, match="ended"):
        await auth.user_for_token(token)


async def test_a_session_answered_while_the_signal_moved_is_not_cached(world):
    clock, store, signal, auth = world
    token = token_for(clock)

    async def racing_load(user_id, session_id):
        user = await Store.load(store, user_id, session_id)
        await signal.publish(sessions=[session_id])  # a logout committed while the query ran
        return user

    auth.load_session = racing_load
    await auth.user_for_token(token)
    auth.load_session = store.load
    store.live = False
    with pytest.raises(TokenRefused):
        await auth.user_for_token(token)


async def test_the_cache_ttl_bounds_out_of_band_edits(world, monkeypatch):
    monkeypatch.setattr(settings, "SESSION_CACHE_TTL", 60)
    clock, store, signal, auth = world
    token = token_for(clock)
    await auth.user_for_token(token)
    store.live = False
    clock.now += 59
    await auth.user_for_token(token)
    clock.now += 2
    with pytest.raises(TokenRefused):
        await auth.user_for_token(token)


async def test_a_cached_token_still_expires(world):
    clock, store, signal, auth = world
    token = token_for(clock, lifetime=120)
    await auth.user_for_token(token)
    clock.now += 121
    with pytest.raises(TokenRefused, match="expired"):
        await auth.user_for_token(token)


async def test_a_cached_session_is_looked_up_again_past_its_expiry(world):
    clock, store, signal, auth = world
    token = token_for(clock)
    store.expires_at = clock.now + 10
    await auth.user_for_token(token)
    store.expires_at = clock.now + 3600  # a refresh extended the session
    clock.now += 11
    await auth.user_for_token(token)
    assert store.lookups == 2


async def test_a_token_naming_another_user_than_its_session_is_refused(world):
    clock, store, signal, auth = world

    async def other_user(user_id, session_id):
        user = await Store.load(store, user_id, session_id)
        user.id = 8
        return user

    auth.load_session = other_user
    with pytest.raises(TokenRefused, match="malformed"):
        await auth.user_for_token(token_for(clock))


async def test_a_revocation_removes_the_sessions_it_names_and_no_other(world):
    clock, store, signal, auth = world
    token = token_for(clock)
    other = jwt.decode(token, options={"verify_signature": False}, audience=settings.JWT_AUDIENCE)
    other["sid"] = "0b5e7f4e-5d0a-4a56-8d4e-2f1c3b6a7e90"
    other_token = jwt.encode(
        other, settings.SECRET_KEY, algorithm=settings.JWT_ALGORITHM, headers={"typ": "at+jwt"}
    )
    await auth.user_for_token(token)
    await auth.user_for_token(other_token)
    assert store.lookups == 2
    await signal.publish(sessions=[other["sid"]])  # a logout of the other session
    await auth.user_for_token(token)
    assert store.lookups == 2  # still cached: a logout elsewhere does not empty the cache
    await auth.user_for_token(other_token)
    assert store.lookups == 3
    await signal.publish(users=[7])  # an account change: every session of the account goes
    await auth.user_for_token(token)
    await auth.user_for_token(other_token)
    assert store.lookups == 5


async def test_a_profile_change_keeps_the_session_cached_and_marks_its_user_object_stale(world):
    clock, store, signal, auth = world
    token = token_for(clock)
    user = await auth.user_for_token(token)
    user.profile_json = b"{}"
    assert not user.profile_stale
    await signal.publish(profiles=[8])  # another account's user object: nothing here changes
    assert not user.profile_stale and user.profile_json == b"{}"
    await signal.publish(profiles=[7])  # e.g. a login elsewhere moved last_login
    assert await auth.user_for_token(token) is user and store.lookups == 1  # still cached
    assert user.profile_stale and user.profile_json is None

    class Row:
        email_verified, pending_email, has_usable_password, last_login = True, None, True, None

    # a read that began before another change was heard does not make the object fresh
    as_of = user.profile_changes
    await signal.publish(profiles=[7])
    user.read_profile(Row(), as_of)
    assert user.profile_stale
    user.read_profile(Row(), user.profile_changes)
    assert not user.profile_stale and user.email_verified is True


async def test_a_session_looked_up_across_a_profile_change_is_cached_with_its_user_object_stale(world):
    """A login anywhere publishes a profile change: it must not stop other lookups from being cached
    (as a revocation does), but what they read may predate it."""
    clock, store, signal, auth = world
    load = store.load

    async def load_across_a_profile_change(user_id, session_id):
        await signal.publish(profiles=[99])  # heard while this lookup waits on the database
        return await load(user_id, session_id)

    auth.load_session = load_across_a_profile_change
    token = token_for(clock)
    user = await auth.user_for_token(token)
    assert user.profile_stale
    assert await auth.user_for_token(token) is user and store.lookups == 1  # cached all the same


class Disconnected:
    """A cross-host listener that lost its connection."""

    name = "test"
    synced = False

    async def announce(self, connection, message):
        pass

    async def publish(self, message):
        pass


async def test_no_cached_session_is_trusted_while_the_listener_is_out_of_sync(world):
    clock, store, _, _ = world
    listener = Disconnected()
    signal = Revocation(ProcessEpoch(), listener)
    auth = Authenticator(signal, store.load, clock)
    token = token_for(clock)
    await auth.user_for_token(token)
    await auth.user_for_token(token)
    assert store.lookups == 2  # every request looks its session up
    store.live = False  # ended on a host whose message this worker cannot hear
    with pytest.raises(TokenRefused):
        await auth.user_for_token(token)
    store.live = True
    listener.synced = True  # back in sync (it dropped its cache on the way): caching resumes
    await auth.user_for_token(token)
    await auth.user_for_token(token)
    assert store.lookups == 4


async def test_while_the_database_is_away_a_session_seen_live_still_answers(world):
    clock, store, _, _ = world
    listener = Disconnected()
    listener.synced = True
    signal = Revocation(ProcessEpoch(), listener)
    auth = Authenticator(signal, store.load, clock)
    token = token_for(clock)
    await auth.user_for_token(token)  # cached while in sync
    listener.synced = False  # the listener lost its connection: the database went away

    async def away(user_id, session_id):
        raise ConnectionRefusedError("database away")

    auth.load_session = away
    assert (await auth.user_for_token(token)).id == 7  # looked up, failed: the session seen live answers
    clock.now += settings.SESSION_CACHE_TTL + 1
    with pytest.raises(ConnectionRefusedError):  # never beyond the cache's TTL (503 at the edge)
        await auth.user_for_token(token)


async def test_a_session_found_ended_while_out_of_sync_is_not_answered_from_the_cache_later(world):
    clock, store, _, _ = world
    listener = Disconnected()
    listener.synced = True
    auth = Authenticator(Revocation(ProcessEpoch(), listener), store.load, clock)
    token = token_for(clock)
    await auth.user_for_token(token)
    listener.synced = False
    store.live = False
    with pytest.raises(TokenRefused):
        await auth.user_for_token(token)

    async def away(user_id, session_id):
        raise ConnectionRefusedError("database away")

    auth.load_session = away
    with pytest.raises(ConnectionRefusedError):
        await auth.user_for_token(token)
