"""Users, passwords, sessions and API tokens.

Passwords are hashed with Argon2id (passwords.py); sign-in attempts are throttled per account
and per client address (throttle.py). Tokens are 43 random URL-safe characters after a
`tb_` prefix, stored as their sha256.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.accounts import passwords, throttle
from app.accounts.models import ApiToken, User
from app.accounts.passwords import WeakPassword

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
TOKEN_PREFIX = "tb_"


class AccountInvalid(ValueError):
    """A username or password that cannot be used; the message says why."""


def now() -> datetime:
    return datetime.now(UTC)


def any_user(session: Session) -> bool:
    return bool(session.scalar(select(func.count()).select_from(User)))


def create_user(session: Session, *, username: str, password: str, is_admin: bool = False) -> User:
    username = username.strip()
    if not USERNAME.match(username):
        raise AccountInvalid(
            "a username is 1 to 64 letters, digits, dots, dashes or underscores, "
            "starting with a letter or digit"
        )
    _check_new_password(password, username)
    taken = session.scalar(select(User).where(func.lower(User.username) == username.lower()))
    if taken is not None:
        raise AccountInvalid(f"the username '{username}' is taken")
    user = User(
        username=username, password_hash=passwords.hash_password(password), is_admin=is_admin
    )
    session.add(user)
    session.commit()
    return user


def _check_new_password(password: str, username: str) -> None:
    try:
        passwords.check_new_password(password, username=username)
    except WeakPassword as exc:
        raise AccountInvalid(str(exc)) from exc


def authenticate(session: Session, username: str, password: str, *, client: str) -> User | None:
    """The user these credentials name, or None. Raises throttle.TooManyAttempts, before any
    password is checked, once this account or this client address has failed too often."""
    throttle.check(username, client)
    user = session.scalar(select(User).where(User.username == username.strip()))
    with throttle.one_of_few(client):
        matches = passwords.verify(user.password_hash if user else None, password)
    if not matches:
        throttle.failed(username, client)
        return None
    assert user is not None
    if user.disabled:
        return None
    throttle.succeeded(username)
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
        session.commit()
    return user


def end_sessions(session: Session, user: User) -> None:
    """Every session cookie issued to `user` so far stops working."""
    session.execute(
        update(User)
        .where(User.id == user.id)
        .values(session_generation=User.session_generation + 1)
    )
    session.commit()
    session.refresh(user)


def set_disabled(session: Session, user: User, disabled: bool) -> None:
    user.disabled = disabled
    session.commit()
    end_sessions(session, user)  # re-enabling must not bring old cookies back either


def change_password(session: Session, user: User, *, current: str, new: str, client: str) -> None:
    """The user's own change: the current password first (throttled like a sign-in)."""
    if authenticate(session, user.username, current, client=client) is None:
        raise AccountInvalid("the current password is wrong")
    set_password(session, user, new)


def set_password(session: Session, user: User, new: str) -> None:
    """A new password (the user's own change, or an admin's reset); ends every session."""
    _check_new_password(new, user.username)
    user.password_hash = passwords.hash_password(new)
    session.commit()
    end_sessions(session, user)
    throttle.succeeded(user.username)  # a locked-out user can sign in with the new one at once


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: User, name: str) -> tuple[str, ApiToken]:
    """The token itself (shown once, never stored) and its row."""
    name = name.strip()[:100] or "token"
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, name=name, token_hash=_digest(token), prefix=token[:10])
    session.add(row)
    session.commit()
    return token, row


def user_for_token(session: Session, token: str) -> User | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(token)))
    if row is None or row.revoked_at is not None or row.user.disabled:
        return None
    row.last_used_at = now()
    session.commit()
    return row.user


def revoke_token(session: Session, user: User, token_id: int) -> bool:
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != user.id or row.revoked_at is not None:
        return False
    row.revoked_at = now()
    session.commit()
    return True
