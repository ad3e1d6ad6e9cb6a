"""Passwords compare in Unicode NFKC (issue item 3), and what each check costs is the same for every
stored hash and every account state (issue item 4). No database: the password functions and their
pool, counting the current-policy verifications each call runs."""

from __future__ import annotations

import unicodedata
from collections import Counter

import pytest
from passlib.hash import django_pbkdf2_sha256

from apps.user import passwords

NFC = unicodedata.normalize("NFC", "Crème-brûlée-42")  # as typed on Windows
NFD = unicodedata.normalize("NFD", NFC)  # as typed on macOS: e + combining accent
FULLWIDTH = NFC.replace("42", "４２")  # a compatibility form: NFKC folds it to "42"
assert NFC != NFD and unicodedata.normalize("NFKC", FULLWIDTH) == NFC


def current_verifications(before: Counter) -> int:
    return passwords._pool().stats.ops[passwords.current_kind()] - before[passwords.current_kind()]


def ops() -> Counter:
    return Counter(passwords._pool().stats.ops)


@pytest.mark.parametrize("typed", [NFD, FULLWIDTH, NFC], ids=["nfd", "fullwidth", "nfc"])
async def test_any_form_of_the_password_opens_the_account(typed):
    stored = await passwords.hash_password(NFC)
    assert await passwords.verify_password(typed, stored) == (True, None)


async def test_the_hash_is_made_from_the_normalised_password():
    stored = await passwords.hash_password(NFD)
    assert passwords._context().verify(NFC, stored)


@pytest.mark.parametrize(
    "make_old_hash",
    [passwords._context().hash, django_pbkdf2_sha256.using(rounds=1000).hash],
    ids=["argon2id of this service before normalisation", "django pbkdf2_sha256"],
)
async def test_a_hash_of_the_password_as_typed_still_verifies_and_is_upgraded(make_old_hash):
    old = make_old_hash(NFD)  # made from the bytes a macOS user typed, never normalised
    matches, upgraded = await passwords.verify_password(NFD, old)
    assert matches and upgraded and passwords.is_current(upgraded)
    for typed in (NFC, NFD, FULLWIDTH):  # the account has migrated: every form opens it now
        assert await passwords.verify_password(typed, upgraded) == (True, None)


async def test_wrong_passwords_do_not_verify_in_either_form():
    stored = await passwords.hash_password(NFC)
    wrong = unicodedata.normalize("NFD", "Crème-brûlée-43")
    assert await passwords.verify_password(wrong, stored) == (False, None)
    assert await passwords.verify_password("Creme-brulee-42", stored) == (False, None)


async def test_upgrade_false_never_computes_a_new_hash():
    old = django_pbkdf2_sha256.using(rounds=1000).hash(NFC)
    before = ops()
    assert await passwords.verify_password(NFC, old, upgrade=False) == (True, None)
    assert current_verifications(before) == 1  # the dummy, and no re-hash


STORED = {
    "current argon2id": lambda: passwords._context().hash(NFC),
    "unusable": lambda: "!" + "x" * 40,
    "empty": lambda: "",
    "unknown format": lambda: "md5$salt$0123456789abcdef",
    "legacy pbkdf2_sha256": lambda: django_pbkdf2_sha256.using(rounds=1000).hash(NFC),
    "unknown account": lambda: None,
}


@pytest.mark.parametrize("make_stored", STORED.values(), ids=STORED.keys())
@pytest.mark.parametrize(("typed", "passes"), [("Wrong-password-1", 1), (NFD + "x", 2)], ids=["nfkc", "nfd"])
async def test_every_path_costs_one_current_policy_verification_per_pass(make_stored, typed, passes):
    """The second pass depends on the input alone (which the client knows); never on the account."""
    stored = make_stored()
    before = ops()
    if stored is None:
        await passwords.burn_password_check(typed)
    else:
        assert await passwords.verify_password(typed, stored) == (False, None)
    assert current_verifications(before) == passes


async def test_a_match_on_the_first_pass_still_runs_the_second():
    # An inactive account answers 401 whatever the password: a right one must not answer sooner.
    stored = await passwords.hash_password(NFC)
    before = ops()
    assert await passwords.verify_password(NFD, stored, upgrade=False) == (True, None)
    assert current_verifications(before) == 2


def test_the_current_kind_names_the_hashes_made_now():
    assert passwords._kind(passwords._context().hash("x")) == passwords.current_kind()
    assert passwords._kind(django_pbkdf2_sha256.using(rounds=1000).hash("x")) == "django_pbkdf2_sha256 1000"
    assert passwords._kind("!") == passwords._kind("") == passwords.UNUSABLE
    assert passwords._kind("plaintext-password") == passwords.UNKNOWN
