"""The FastAPI application: API, pages and static files."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from app.accounts.service import any_user
from app.config import get_settings
from app.db import get_sessionmaker
from app.web import (
    account_pages,
    api,
    auth_api,
    comparison_pages,
    dataset_pages,
    dataset_uploads,
    deletion_routes,
    errors,
    generation_api,
    home_page,
    job_pages,
    playground_pages,
    predictions_api,
    sample_answers,
)
from app.web.auth import NotSignedIn, current_user
from app.web.body_limit import BodyLimitMiddleware
from app.web.browser_safety import (
    NONCE_KEY,
    BrowserSafetyMiddleware,
    content_security_policy,
)
from app.web.secret_key import session_secret

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="Tuneboard",
        description="Upload labelled data, adapt a pretrained model, compare, download. "
        "Authenticate with `Authorization: Bearer <token>` (tokens are made on the account "
        "page) or a signed-in session.",
        version="0.1.0",
        docs_url=None,  # served below from vendored files: the machine may be offline
        redoc_url=None,
        openapi_url=None,  # served below, to signed-in users only
    )
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_upload_bytes,
        max_other_bytes=settings.max_body_bytes,
    )
    # Signed (not encrypted) cookie holding the user id, their session generation and the
    # CSRF token: HttpOnly, SameSite lax, Secure outside development (behind HTTPS).
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(settings),
        session_cookie="tuneboard_session",
        max_age=settings.session_days * 24 * 3600,
        same_site="lax",
        https_only=not settings.development,
    )
    # Outermost: a foreign Host is refused before anything else runs.
    app.add_middleware(
        BrowserSafetyMiddleware,
        allowed_hosts=settings.allowed_hosts,
        https_only=not settings.development,
    )
    errors.install(app)

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse(
                {"detail": f"{exc}; send Authorization: Bearer <token> or sign in"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        with get_sessionmaker()() as session:
            first_run = not any_user(session)
        target = "/setup" if first_run else f"/login?next={quote(request.url.path)}"
        return RedirectResponse(target, status_code=303)

    app.include_router(account_pages.router)
    app.include_router(api.router)
    app.include_router(dataset_uploads.router)
    app.include_router(predictions_api.router)
    app.include_router(generation_api.router)
    app.include_router(auth_api.router)
    app.include_router(deletion_routes.router)
    app.include_router(sample_answers.api)
    app.include_router(sample_answers.pages)
    for pages in (home_page, dataset_pages, job_pages, playground_pages, comparison_pages):
        app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(current_user)])
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(current_user)])
    def docs(request: Request) -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Tuneboard API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )
        # Swagger UI starts from an inline script: the policy admits it by this response's
        # nonce (app/web/browser_safety.py), and nothing else inline.
        nonce = getattr(request.state, NONCE_KEY)
        html = bytes(page.body).decode().replace("<script>", f'<script nonce="{nonce}">')
        policy = content_security_policy(nonce, inline_styles=True)
        return HTMLResponse(html, headers={"Content-Security-Policy": policy})

    return app


app = create_app()
