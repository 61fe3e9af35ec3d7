"""Hyperparameters a user may set on a job, with their limits and per-strategy defaults."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.jobs.strategies import DEFAULT_EPOCHS, Strategy


class JobParams(BaseModel):
    """Anything not listed here is a 422, so a typo is never silently ignored."""

    # NaN and infinities are never a setting (and JSON cannot carry them back in an answer).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    epochs: int | None = Field(
        None,
        ge=1,
        le=200,
        description="Default per strategy; frozen features fit their head to convergence "
        "and use no epochs, learning rate, patience, warmup or weight decay",
    )
    batch_size: int = Field(16, ge=1, le=1024)
    learning_rate: float | None = Field(None, gt=0, le=1, description="Default per strategy")
    max_length: int = Field(128, ge=8, le=512, description="Tokens per example")
    seed: int = Field(42, ge=0, le=2**31 - 1)
    weight_decay: float = Field(0.01, ge=0, le=1)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    patience: int | None = Field(
        None,
        ge=1,
        le=200,
        description="Early stopping: epochs without a better validation "
        "macro-F1 before stopping (default off)",
    )
    top_k: int | None = Field(None, ge=1, le=96, description="transfer_top_k: layers to train")
    lora_rank: int = Field(8, ge=1, le=256)
    lora_alpha: int = Field(16, ge=1, le=1024)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    lora_target_modules: list[str] | None = Field(
        None, max_length=16, description="Module names to adapt; default per architecture"
    )
    time_limit_minutes: int | None = Field(
        None,
        ge=1,
        le=7 * 24 * 60,
        description="Stop the job (failed: time limit) after this many minutes of running; "
        "default TUNEBOARD_JOB_TIME_LIMIT_SECONDS",
    )
    augment: bool | None = Field(
        None,
        description="Images: random resized crops and flips of training images. Default: on "
        "where the backbone trains, off for frozen features (each augmented image would need "
        "a fresh backbone pass, defeating the feature cache)",
    )


def resolve_params(params: dict[str, Any], strategy: Strategy) -> dict[str, Any]:
    """Fill the per-strategy defaults; auto jobs keep theirs open until the strategy is known."""
    values = dict(params)
    if strategy in DEFAULT_EPOCHS and values.get("epochs") is None:
        values["epochs"] = DEFAULT_EPOCHS[strategy]
    return values
