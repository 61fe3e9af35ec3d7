"""Sign-in throttling: failed password checks counted per account and per client address in
moving windows (the `limits` library), so guessing is slow and a burst of guesses from one
address never reaches the (deliberately slow) password hash.

A throttled attempt is refused before its password is checked, with the seconds to wait. A
successful sign-in clears its account's count. The counts live in memory for the embedded
default (one web process) or in Redis where several web servers share them
(TUNEBOARD_THROTTLE_STORAGE_URL).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from app.config import get_settings


class TooManyAttempts(Exception):
    """Answered 429 with Retry-After."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@lru_cache
def _limiter() -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(storage_from_string(get_settings().throttle_storage_url))


@lru_cache
def _limits() -> tuple[RateLimitItem, RateLimitItem]:
    settings = get_settings()
    return parse(settings.signin_account_limit), parse(settings.signin_address_limit)


def _account(username: str) -> str:
    return username.strip().lower()[:64]


def _rules(username: str, client: str) -> list[tuple[RateLimitItem, tuple[str, ...], str]]:
    per_account, per_address = _limits()
    return [
        (per_account, ("signin-account", _account(username)), "for this account"),
        (per_address, ("signin-address", client), "from your address"),
    ]


def check(username: str, client: str) -> None:
    """Raise TooManyAttempts if another failure now would be one too many."""
    limiter = _limiter()
    for item, keys, where in _rules(username, client):
        if not limiter.test(item, *keys):
            reset_at, _left = limiter.get_window_stats(item, *keys)
            wait = max(1, math.ceil(reset_at - time.time()))
            raise TooManyAttempts(
                f"too many failed sign-ins {where}; try again in {wait} s", retry_after=wait
            )


def failed(username: str, client: str) -> None:
    limiter = _limiter()
    for item, keys, _where in _rules(username, client):
        limiter.hit(item, *keys)


# Password checks one client address may have running at once; a burst beyond that is
# refused at once instead of queueing for the (few) check slots everyone shares.
IN_FLIGHT_PER_ADDRESS = 2
_in_flight: Counter[str] = Counter()
_in_flight_lock = threading.Lock()


@contextmanager
def one_of_few(client: str) -> Iterator[None]:
    with _in_flight_lock:
        if _in_flight[client] >= IN_FLIGHT_PER_ADDRESS:
            raise TooManyAttempts(
                "other sign-ins from your address are being checked; try again in a second",
                retry_after=1,
            )
        _in_flight[client] += 1
    try:
        yield
    finally:
        with _in_flight_lock:
            _in_flight[client] -= 1
            if not _in_flight[client]:
                del _in_flight[client]


def succeeded(username: str) -> None:
    _limiter().clear(_limits()[0], "signin-account", _account(username))
