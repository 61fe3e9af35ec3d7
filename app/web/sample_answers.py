"""A generation job's sample answers: the same few validation prompts answered by the base
model before training and by the tuned model after each epoch (samples.json, written by
worker/training/generation_samples.py), as JSON and as the job page's Before and after
panel, which polls its fragment while the job runs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from app.jobs import artifacts
from app.web.auth import check_csrf, current_user
from app.web.deps import JobDep, SettingsDep
from app.web.templating import render

api = APIRouter(
    prefix="/api/v1",
    tags=["api"],
    dependencies=[Depends(current_user), Depends(check_csrf)],
)
pages = APIRouter(
    include_in_schema=False, dependencies=[Depends(current_user), Depends(check_csrf)]
)


@api.get("/jobs/{job_id}/samples")
def get_samples(job: JobDep, settings: SettingsDep) -> dict[str, Any]:
    """A generation job's sample answers: `rows` (each sample's validation `index`, prompt
    `text` and `reference` answer), `base` (the base model's answers, before training) and
    `epochs` ({"1": answers after epoch 1, …}), in the rows' order; filled in as the job
    trains. 404 for other tasks, and before the base model has answered."""
    samples = artifacts.sample_answers(settings, job.id)
    if samples is None:
        if job.dataset.task != "generation":
            raise HTTPException(
                404, f"job {job.id} is a {job.dataset.task} job; only generation writes samples"
            )
        raise HTTPException(
            404,
            f"job {job.id} has no sample answers yet: the base model answers its sample "
            "prompts when training starts",
        )
    return samples


def before_and_after(samples: dict[str, Any] | None, epoch: int | None = None) -> dict | None:
    """What the panel shows: each sample prompt with the base model's answer, the answer
    after `epoch` (default: the latest) and the reference. None before the base answers."""
    if samples is None or samples.get("base") is None:
        return None
    epochs = sorted(int(e) for e in samples.get("epochs", {}))
    shown = epoch if epoch in epochs else (epochs[-1] if epochs else None)
    tuned = samples["epochs"][str(shown)] if shown is not None else [None] * len(samples["rows"])
    rows = [
        {**row, "base": base, "tuned": after}
        for row, base, after in zip(samples["rows"], samples["base"], tuned, strict=True)
    ]
    return {"epochs": epochs, "epoch": shown, "chosen": epoch in epochs, "rows": rows}


@pages.get("/jobs/{job_id}/samples", response_class=HTMLResponse)
def samples_panel(
    request: Request,
    job: JobDep,
    settings: SettingsDep,
    epoch: Annotated[str, Query(max_length=6)] = "",
) -> Response:
    """The panel as a fragment: `epoch` is the one picked in its select ("" for the latest,
    which moves on as epochs end)."""
    picked = int(epoch) if epoch.isdigit() else None
    panel = before_and_after(artifacts.sample_answers(settings, job.id), picked)
    return render(request, "jobs/_samples.html", {"job": job, "panel": panel})
