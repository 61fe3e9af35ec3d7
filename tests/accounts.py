"""Users for tests, and clients signed in as them the way a browser signs in."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from app.accounts import service as accounts
from app.accounts.models import User
from app.db import get_sessionmaker

PASSWORD = "correct horse battery"
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def ensure_user(username: str, *, admin: bool = False) -> User:
    with get_sessionmaker()() as session:
        existing = session.query(User).filter_by(username=username).one_or_none()
        if existing is not None:
            return existing
        return accounts.create_user(session, username=username, password=PASSWORD, is_admin=admin)


def csrf_of(client: TestClient, page: str = "/login") -> str:
    match = CSRF_META.search(client.get(page).text)
    assert match, f"no CSRF token on {page}"
    return match.group(1)


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Sign `client` in through the login form; its later unsafe requests carry the
    session's CSRF token as htmx would. Returns that token."""
    client.headers.pop("X-CSRF-Token", None)  # a previous session's, if signed in before
    token = csrf_of(client, "/login")
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    token = csrf_of(client, "/account")  # a new session on sign-in: a new token
    client.headers["X-CSRF-Token"] = token
    return token
