"""Signing in and out, the first-run page that makes the first admin, a user's API tokens,
and the admin's list of users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.accounts import service as accounts
from app.accounts.models import User
from app.web.auth import AdminDep, UserDep, check_csrf, sign_in, sign_out
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
    user = accounts.authenticate(session, username, password)
    if user is None:
        context = {"next": _safe_next(next), "error": "wrong username or password"}
        return render(request, "accounts/login.html", context, status=401)
    sign_in(request, user)
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request) -> Response:
    sign_out(request)
    return RedirectResponse("/login", status_code=303)


@router.get("/setup", response_class=HTMLResponse)
def setup_page(request: Request, session: SessionDep) -> Response:
    """First visit, no user yet: make the first admin. Gone once anyone exists."""
    if accounts.any_user(session):
        return RedirectResponse("/login", status_code=303)
    return render(request, "accounts/setup.html", {"error": None})


@router.post("/setup", response_class=HTMLResponse)
def setup(request: Request, session: SessionDep, username: Text, password: Text) -> Response:
    if accounts.any_user(session):
        return RedirectResponse("/login", status_code=303)
    try:
        user = accounts.create_user(session, username=username, password=password, is_admin=True)
    except accounts.AccountInvalid as exc:
        return render(request, "accounts/setup.html", {"error": str(exc)}, status=422)
    sign_in(request, user)
    return RedirectResponse("/", status_code=303)


def _account(request: Request, user: User, **extra: object) -> Response:
    context = {"user": user, "new_token": None, "error": None, **extra}
    return render(request, "accounts/account.html", context)


@router.get("/account", response_class=HTMLResponse)
def account(request: Request, user: UserDep) -> Response:
    return _account(request, user)


@router.post("/account/tokens", response_class=HTMLResponse)
def create_token(request: Request, session: SessionDep, user: UserDep, name: Text) -> Response:
    token, _ = accounts.create_token(session, user, name)
    session.refresh(user)
    return _account(request, user, new_token=token)


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(session: SessionDep, user: UserDep, token_id: Id) -> Response:
    accounts.revoke_token(session, user, token_id)
    return RedirectResponse("/account", status_code=303)


def _users(request: Request, session: SessionDep, error: str | None = None) -> Response:
    context = {"users": accounts.list_users(session), "error": error}
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
