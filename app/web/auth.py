"""Who is asking: the signed-in user of a session cookie, or the owner of a Bearer token.

A session cookie carries the user id and the user's session generation at sign-in; a cookie
whose generation is no longer the user's (after sign-out, a password change or disabling)
is refused, so sessions are revocable although the cookie itself is only signed.

Every route but the login and first-run pages depends on `current_user`. A request without
one gets a 401 on the API and a redirect to the login page (or, before any user exists, to
the first-run page) everywhere else.

CSRF: a session-cookie request that changes something (POST, PUT, PATCH, DELETE) must carry
the session's token, as the `X-CSRF-Token` header (htmx and app.js send it) or a
`csrf_token` form field (plain forms), and must not come from another origin. Bearer-token
requests carry no ambient credentials, so they need neither.
"""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from app.accounts import service as accounts
from app.accounts.models import User
from app.db import session_scope

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


class NotSignedIn(Exception):
    """No valid session or token; errors.py turns it into a 401 or a login redirect."""


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (the login form has one too)."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return str(token)


def sign_in(request: Request, user: User) -> None:
    # A fresh session on sign-in: a session fixed before it gains nothing.
    request.session.clear()
    request.session["user_id"] = user.id
    request.session["generation"] = user.session_generation
    csrf_token(request)


def sign_out(request: Request, session: Session) -> None:
    """Ends this browser's session and every other one of the same user: a copied cookie
    must not outlive the sign-out."""
    user = _session_user(request, session)
    if user is not None:
        accounts.end_sessions(session, user)
    request.session.clear()


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def check_csrf(request: Request) -> None:
    """Dependency of every router: refuses unsafe session requests without the token or
    from another origin (403)."""
    if request.method not in UNSAFE or _bearer(request) is not None:
        return
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, "cross-origin request refused")
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise HTTPException(403, "cross-site request refused")
    expected = request.session.get("csrf")
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()  # parsed once; the route reads the same form
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not secrets.compare_digest(str(expected), sent):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page and try again")


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def current_user(request: Request, session: Annotated[Session, Depends(session_scope)]) -> User:
    token = _bearer(request)
    if token is not None:
        user = accounts.user_for_token(session, token)
        if user is None:
            raise NotSignedIn("the API token is unknown or revoked")
    else:
        user = _session_user(request, session)
        if user is None:
            raise NotSignedIn("sign in first")
    request.state.user = user  # for the page layout
    return user


def _session_user(request: Request, session: Session) -> User | None:
    user_id = request.session.get("user_id")
    user = session.get(User, user_id) if isinstance(user_id, int) else None
    if user is None or user.disabled:
        return None
    if request.session.get("generation") != user.session_generation:
        return None  # signed out, password changed or disabled since this cookie was made
    return user


def signed_in_user(request: Request, session: Annotated[Session, Depends(session_scope)]) -> User:
    """The user of a browser session, never of a Bearer token: for managing tokens and the
    password, which a leaked token must not be able to do."""
    if _bearer(request) is not None:
        raise HTTPException(403, "sign in with a password for this; an API token cannot")
    return current_user(request, session)


def admin_user(user: Annotated[User, Depends(current_user)]) -> User:
    if not user.is_admin:
        raise HTTPException(404, "not found")  # its existence is not revealed either
    return user


UserDep = Annotated[User, Depends(current_user)]
SignedInDep = Annotated[User, Depends(signed_in_user)]
AdminDep = Annotated[User, Depends(admin_user)]
