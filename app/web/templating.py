"""One Jinja environment for every page; fragments are named blocks of the page templates."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from jinja2_fragments.fastapi import Jinja2Blocks

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"

templates = Jinja2Blocks(directory=str(TEMPLATES_DIR))  # autoescape is on for .html


def ago(moment: datetime | None) -> str:
    """'3 minutes ago': people read relative times faster than timestamps."""
    if moment is None:
        return "—"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    seconds = int((datetime.now(UTC) - moment).total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def filesize(n: float | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def count(n: float | None) -> str:
    """Parameter counts and the like: 22.7M, 1.2k."""
    if n is None:
        return "—"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def percent(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def label_summary(dataset: Any) -> str:
    """What a dataset's labels are, in a few words: "4 classes", "12 labels", "predicts price",
    "writes response"."""
    if dataset.task == "regression":
        return f"predicts {dataset.label_column}"
    if dataset.task == "generation":  # app/datasets/chat_datasets.py
        return f"writes {dataset.label_column}" if dataset.label_column else "chat conversations"
    noun = "labels" if dataset.task == "multi_label" else "classes"
    return f"{len(dataset.label_names)} {noun}"


def task_summary(dataset: Any) -> str:
    """Its size and its labels: "1.2k rows, 4 classes", "300 rows, predicts price"."""
    rows = "images" if dataset.modality == "image" else "rows"
    return f"{count(dataset.num_rows)} {rows}, {label_summary(dataset)}"


templates.env.globals.update(task_summary=task_summary, label_summary=label_summary)
templates.env.filters.update(
    ago=ago, duration=duration, filesize=filesize, count=count, percent=percent
)


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    block: str | None = None,
) -> Response:
    """A whole page, or with ``block`` one of its named fragments (for htmx swaps). Every
    page gets the session's CSRF token and the signed-in user (None on the login pages)."""
    from app.web.auth import csrf_token

    context = {
        "csrf_token": csrf_token(request),
        "current_user": getattr(request.state, "user", None),
        **context,
    }
    return templates.TemplateResponse(request, name, context, status_code=status, block_name=block)
