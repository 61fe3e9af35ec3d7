"""`POST /api/v1/auth/token`: a username and password in, a new API token out, once — what
`tuneboard login` calls, so scripting needs no visit to the account page.

The password is the credential, checked by accounts.authenticate (throttled like a sign-in).
A Bearer token is refused here: a leaked token must not mint more. The session cookie is
neither read nor written, and it is the only ambient credential a browser could send, so the
route needs no CSRF token: a cross-site page that posts here gains nothing it did not already
know (the password), and cannot read the answer.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from app.accounts import service as accounts
from app.accounts.passwords import PasswordChecksBusy
from app.accounts.throttle import TooManyAttempts
from app.web.auth import client_address
from app.web.deps import SessionDep

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    name: str = Field("tuneboard CLI", min_length=1, max_length=100, description="Shown in lists")


class TokenOut(BaseModel):
    token: str = Field(description="Shown this once; send it as `Authorization: Bearer …`")
    name: str
    username: str


@router.post("/token", status_code=201, response_model=TokenOut)
def create_token(
    body: TokenRequest, request: Request, session: SessionDep
) -> TokenOut | JSONResponse:
    if request.headers.get("authorization"):
        raise HTTPException(403, "a new token needs your password, not a token")
    try:
        user = accounts.authenticate(
            session, body.username, body.password, client=client_address(request)
        )
    except TooManyAttempts as exc:
        return JSONResponse(
            {"detail": str(exc)}, status_code=429, headers={"Retry-After": str(exc.retry_after)}
        )
    except PasswordChecksBusy as exc:
        return JSONResponse({"detail": str(exc)}, status_code=503)
    if user is None:
        raise HTTPException(401, "wrong username or password")
    token, row = accounts.create_token(session, user, body.name)
    return TokenOut(token=token, name=row.name, username=user.username)
