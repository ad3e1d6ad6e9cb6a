"""Confusable usernames: the Unicode TR39 skeleton, so "аdmin" (Cyrillic а) cannot pose as "admin".

Two usernames are confusable when their skeletons are equal (UTS #39, section 4):
skeleton(X) = NFD(map each character of NFD(X) to its prototype in confusables.txt). This module
applies it to the name as the service compares names anyway, NFKC and case-folded, so the rule is
case-insensitive like the unique username key.

The data is Unicode's own confusables.txt (17.0.0), vendored verbatim in data/ under the Unicode
License v3. No maintained Python library computes the skeleton: `confusable_homoglyphs` (what
django-registration uses) and `confusables` answer "could these be confused", not a canonical form
an index can hold, and PyICU's SpoofChecker ties the stored skeletons to whatever ICU the machine
has. A newer confusables.txt can change skeletons: replace the file in a migration that recomputes
`username_skeleton` (0003 shows how).

The column holds the SHA-256 of the skeleton, not the skeleton: one Hangul syllable has a skeleton
of 21 bytes, so a 150-character name's can pass PostgreSQL's B-tree row limit (2,704 bytes), and
the unique index is what keeps two racing registrations of look-alikes from both winning.

Logging in never uses the skeleton: a confusable spelling of a username is another name, and only
the exact (case-insensitive) key logs in.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import cache
from pathlib import Path

from apps.user.exceptions import Taken
from apps.user.models import User, normalize_email, username_key

CONFUSABLES = Path(__file__).with_name("data") / "confusables.txt"
# a data line: "0430 ;\t0061 ;\tMA\t# ( а → a ) ..."; the target may be several code points
_LINE = re.compile(r"^([0-9A-F]{4,6}) ;\t([0-9A-F]{4,6}(?: [0-9A-F]{4,6})*) ;\tMA\b", re.ASCII)
SIMILAR = "This username is too similar to an existing one."


@cache
def _prototypes() -> dict[int, str]:
    """confusables.txt as a str.translate table: code point -> its prototype."""
    table: dict[int, str] = {}
    with CONFUSABLES.open(encoding="utf-8-sig") as lines:
        for line in lines:
            match = _LINE.match(line)
            if match:
                source, target = match.groups()
                table[int(source, 16)] = "".join(chr(int(cp, 16)) for cp in target.split())
    if len(table) < 6000:  # a truncated or wrong file would silently weaken the rule
        raise RuntimeError(f"{CONFUSABLES} holds only {len(table)} confusables")
    return table


def skeleton(text: str) -> str:
    """The TR39 skeleton of `text` as it is: NFD, each character to its prototype, NFD again."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", text).translate(_prototypes()))


def username_skeleton(username: str) -> str:
    """The value of User.username_skeleton: SHA-256 (hex) of skeleton(casefold(NFKC(username))).

    Built on `username_key`, so names equal in any case share it, and a rename that keeps the key
    keeps the skeleton.
    """
    return hashlib.sha256(skeleton(username_key(username)).encode()).hexdigest()


def skeleton_after_rename(user: User, username: str) -> str | None:
    """The skeleton `user` has once renamed to `username`.

    A change of case keeps the stored one, NULL included: an account that already had a look-alike
    when the rule came may still change the case of its own name.
    """
    if username_key(username) == user.username_key:
        return user.username_skeleton
    return username_skeleton(username)


async def refuse_confusable(
    username: str | None,
    email: str | None = None,
    *,
    user_id: int | None = None,
    current_key: str | None = None,
) -> None:
    """Refuse `username` if another account has a look-alike of it (the same skeleton, another key).

    The same name in another case is left to the unique `username_key` index and its message; so is
    a race, which the unique `username_skeleton` index settles (call this again after IntegrityError
    to name the field). A rename passes the account's id (it does not conflict with itself) and its
    current key (a change of case keeps the skeleton and needs no check). No username: nothing to check.

    Raises:
        Taken: naming the username field (and the email field, if that is taken too).
    """
    if username is None:
        return
    key = username_key(username)
    if key == current_key:
        return
    others = User.filter(username_skeleton=username_skeleton(username)).exclude(username_key=key)
    if user_id is not None:
        others = others.exclude(id=user_id)
    if not await others.exists():
        return
    errors = [{"field": "username", "message": SIMILAR}]
    if email is not None:
        owners = User.filter(email=normalize_email(email))
        if await (owners.exclude(id=user_id) if user_id is not None else owners).exists():
            errors.append({"field": "email", "message": "An account with this email already exists."})
    raise Taken(errors=errors)
