"""Passwords: what a new one must be, and checking one without letting anyone hog the CPU.

Argon2id is slow on purpose (tens of milliseconds of CPU per check), so a burst of sign-in
attempts could starve the server. Checks therefore run a few at a time (a semaphore sized to
the cores); attempts beyond that wait briefly, then get "busy, try again" instead of piling
up. Throttling per account and per address (throttle.py) keeps most bad attempts from ever
reaching a check.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 10
MAX_LENGTH = 1024  # hashing a megabyte-long "password" is work for nothing
_hasher = PasswordHasher()
# Verified against when the user does not exist, so a wrong name costs what a wrong password
# does and sign-in timing does not reveal which names exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
# Argon2id here uses 4 lanes (threads) per check: a couple at once keeps every core busy.
_checks = threading.BoundedSemaphore(max(2, (os.cpu_count() or 2) // 2))
WAIT_FOR_A_CHECK_SECONDS = 5.0


class WeakPassword(ValueError):
    """A new password that would be guessed quickly; the message says what to pick."""


class PasswordChecksBusy(RuntimeError):
    """Every password-check slot stayed taken for a while: answered 503, try again."""


@cache
def _common() -> frozenset[str]:
    # zxcvbn's list: the 30,000 most common passwords from leaked password sets.
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def check_new_password(password: str, *, username: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(
            f"a password needs at least {MIN_LENGTH} characters; a few unrelated words work well"
        )
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"a password may have at most {MAX_LENGTH} characters")
    folded = password.lower()
    if folded in _common() or folded.rstrip("0123456789!") in _common():
        raise WeakPassword(
            "that password is among the most common ones attackers try first; pick another"
        )
    if username and username.lower() in folded:
        raise WeakPassword("a password must not contain the username")


def hash_password(password: str) -> str:
    with _slot():
        return _hasher.hash(password)


def verify(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches; with no hash (no such user) it costs a check all the same."""
    if len(password) > MAX_LENGTH:
        return False
    with _slot():
        try:
            _hasher.verify(password_hash or _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
    return password_hash is not None


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


@contextmanager
def _slot() -> Iterator[None]:
    """One of the few password-check slots, or PasswordChecksBusy after a short wait."""
    if not _checks.acquire(timeout=WAIT_FOR_A_CHECK_SECONDS):
        raise PasswordChecksBusy(
            "the server is busy checking passwords; try again in a few seconds"
        )
    try:
        yield
    finally:
        _checks.release()
