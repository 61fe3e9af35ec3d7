"""The FastAPI application: API, pages and static files."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from app.config import get_settings
from app.web import (
    api,
    comparison_pages,
    dataset_pages,
    errors,
    home_page,
    job_pages,
    playground_pages,
    predictions_api,
)
from app.web.body_limit import BodyLimitMiddleware

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"


def create_app() -> FastAPI:
    settings = get_settings()
    app = FastAPI(
        title="Tuneboard",
        description="Upload labelled data, adapt a pretrained model, compare, download.",
        version="0.1.0",
        docs_url=None,  # served below from vendored files: the machine may be offline
        redoc_url=None,
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    errors.install(app)
    app.include_router(api.router)
    app.include_router(predictions_api.router)
    for pages in (home_page, dataset_pages, job_pages, playground_pages, comparison_pages):
        app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Tuneboard API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )

    return app


app = create_app()
