"""The one rule for who sees a row: its owner, and every admin. Lookups by id apply it with
`visible`, listings with `owned`; another user's row then answers exactly as a missing one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select

from app.accounts.models import User


def visible(user: User, row: Any) -> bool:
    return user.is_admin or getattr(row, "owner_id", None) == user.id


def owned(query: Select[Any], table: Any, user: User) -> Select[Any]:
    """`query` narrowed to the rows `user` may see."""
    return query if user.is_admin else query.where(table.owner_id == user.id)
