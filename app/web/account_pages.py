"""Signing in and out, the first-run page that makes the first admin, a user's password and
API tokens, and the admin's list of users (add, disable, reset a password)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.accounts import service as accounts
from app.accounts.models import User
from app.accounts.passwords import MIN_LENGTH, PasswordChecksBusy
from app.accounts.throttle import TooManyAttempts
from app.web.auth import (
    AdminDep,
    SignedInDep,
    UserDep,
    check_csrf,
    client_address,
    sign_in,
    sign_out,
)
from app.web.deps import Id, SessionDep
from app.web.templating import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(check_csrf)])
Text = Annotated[str, Form()]


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never `//evil.example` or `https://…` (open redirect)."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, session: SessionDep, next: str = "/") -> Response:
    if not accounts.any_user(session):
        return RedirectResponse("/setup", status_code=303)
    return render(request, "accounts/login.html", {"next": _safe_next(next), "error": None})


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request, session: SessionDep, username: Text, password: Text, next: Text = "/"
) -> Response:
    context: dict[str, object] = {"next": _safe_next(next)}
    try:
        user = accounts.authenticate(session, username, password, client=client_address(request))
    except TooManyAttempts as exc:
        headers = {"Retry-After": str(exc.retry_after)}
        page = render(request, "accounts/login.html", {**context, "error": str(exc)}, status=429)
        page.headers.update(headers)
        return page
    except PasswordChecksBusy as exc:
        return render(request, "accounts/login.html", {**context, "error": str(exc)}, status=503)
    if user is None:
        context["error"] = "wrong username or password"
        return render(request, "accounts/login.html", context, status=401)
    sign_in(request, user)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, session: SessionDep) -> Response:
    sign_out(request, session)
    return RedirectResponse("/login", status_code=303)


@router.get("/setup", response_class=HTMLResponse)
def setup_page(request: Request, session: SessionDep) -> Response:
    """First visit, no user yet: make the first admin. Gone once anyone exists."""
    if accounts.any_user(session):
        return RedirectResponse("/login", status_code=303)
    return render(request, "accounts/setup.html", {"error": None, "min_length": MIN_LENGTH})


@router.post("/setup", response_class=HTMLResponse)
def setup(request: Request, session: SessionDep, username: Text, password: Text) -> Response:
    if accounts.any_user(session):
        return RedirectResponse("/login", status_code=303)
    try:
        user = accounts.create_user(session, username=username, password=password, is_admin=True)
    except accounts.AccountInvalid as exc:
        context = {"error": str(exc), "min_length": MIN_LENGTH}
        return render(request, "accounts/setup.html", context, status=422)
    sign_in(request, user)
    return RedirectResponse("/", status_code=303)


def _account(request: Request, user: User, *, status: int = 200, **extra: object) -> Response:
    context = {
        "user": user,
        "new_token": None,
        "token_error": None,
        "password_error": None,
        "password_changed": False,
        "min_length": MIN_LENGTH,
        **extra,
    }
    return render(request, "accounts/account.html", context, status=status)


def _password_ok(request: Request, session: SessionDep, user: User, password: str) -> str | None:
    """None when `password` is the user's own; else why not (throttled like a sign-in)."""
    try:
        client = client_address(request)
        if accounts.authenticate(session, user.username, password, client=client) is None:
            return "that is not your current password"
    except (TooManyAttempts, PasswordChecksBusy) as exc:
        return str(exc)
    return None


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, user: UserDep) -> Response:
    return _account(request, user)


@router.post("/account/tokens", response_class=HTMLResponse)
def create_token(
    request: Request, session: SessionDep, user: SignedInDep, name: Text, password: Text
) -> Response:
    """A new token needs the password again: a stolen cookie or token must not mint more."""
    problem = _password_ok(request, session, user, password)
    if problem is not None:
        return _account(request, user, status=403, token_error=problem)
    token, _ = accounts.create_token(session, user, name)
    session.refresh(user)
    return _account(request, user, new_token=token)


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(session: SessionDep, user: SignedInDep, token_id: Id) -> Response:
    accounts.revoke_token(session, user, token_id)
    return RedirectResponse("/account", status_code=303)


@router.post("/account/password", response_class=HTMLResponse)
def change_password(
    request: Request, session: SessionDep, user: SignedInDep, current: Text, new: Text
) -> Response:
    """Ends every other session of the user; this browser stays signed in."""
    try:
        client = client_address(request)
        accounts.change_password(session, user, current=current, new=new, client=client)
    except (accounts.AccountInvalid, TooManyAttempts, PasswordChecksBusy) as exc:
        return _account(request, user, status=422, password_error=str(exc))
    sign_in(request, user)
    return _account(request, user, password_changed=True)


def _users(
    request: Request, session: SessionDep, error: str | None = None, done: str | None = None
) -> Response:
    context = {
        "users": accounts.list_users(session),
        "error": error,
        "done": done,
        "min_length": MIN_LENGTH,
    }
    return render(request, "accounts/users.html", context, status=422 if error else 200)


@router.get("/admin/users", response_class=HTMLResponse)
def users(request: Request, session: SessionDep, admin: AdminDep) -> Response:
    return _users(request, session)


@router.post("/admin/users", response_class=HTMLResponse)
def add_user(
    request: Request,
    session: SessionDep,
    admin: AdminDep,
    username: Text,
    password: Text,
    is_admin: Annotated[bool, Form()] = False,
) -> Response:
    try:
        accounts.create_user(session, username=username, password=password, is_admin=is_admin)
    except accounts.AccountInvalid as exc:
        return _users(request, session, str(exc))
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/admin/users/{user_id}/disabled")
def set_disabled(
    request: Request,
    session: SessionDep,
    admin: AdminDep,
    user_id: Id,
    disabled: Annotated[bool, Form()],
) -> Response:
    target = session.get(User, user_id)
    if target is None:
        return _users(request, session, f"no user with id {user_id}")
    if target.id == admin.id and disabled:
        return _users(request, session, "you cannot disable yourself")
    accounts.set_disabled(session, target, disabled)
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/admin/users/{user_id}/password", response_class=HTMLResponse)
def reset_password(
    request: Request, session: SessionDep, admin: AdminDep, user_id: Id, password: Text
) -> Response:
    """An admin sets a new password for someone who lost theirs; their sessions end."""
    target = session.get(User, user_id)
    if target is None:
        return _users(request, session, f"no user with id {user_id}")
    try:
        accounts.set_password(session, target, password)
    except accounts.AccountInvalid as exc:
        return _users(request, session, f"{target.username}: {exc}")
    if target.id == admin.id:
        sign_in(request, target)  # an admin resetting their own stays signed in here
    return _users(request, session, done=f"new password set for {target.username}")
