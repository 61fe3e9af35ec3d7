"""Users, passwords and API tokens.

Passwords are hashed with Argon2id (argon2-cffi's defaults, rehashed when those change).
Tokens are 43 random URL-safe characters after a `tb_` prefix, stored as their sha256.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.accounts.models import ApiToken, User

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIN_PASSWORD = 8
TOKEN_PREFIX = "tb_"
_hasher = PasswordHasher()
# Verified against when the user does not exist, so a wrong name costs what a wrong password
# does and login timing does not reveal which names exist.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


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
    if len(password) < MIN_PASSWORD:
        raise AccountInvalid(f"a password needs at least {MIN_PASSWORD} characters")
    taken = session.scalar(select(User).where(func.lower(User.username) == username.lower()))
    if taken is not None:
        raise AccountInvalid(f"the username '{username}' is taken")
    user = User(username=username, password_hash=_hasher.hash(password), is_admin=is_admin)
    session.add(user)
    session.commit()
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.username == username.strip()))
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
        session.commit()
    return user


def set_disabled(session: Session, user: User, disabled: bool) -> None:
    user.disabled = disabled
    session.commit()


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
