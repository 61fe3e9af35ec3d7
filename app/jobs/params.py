"""The settings a user may give a job, as the API takes them: built from the one table of
settings (worker/training/hyperparameters.py), plus the worker's own time limit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from app.jobs.strategies import Strategy
from worker.training.hyperparameters import SETTINGS, JobSetting, strategy_defaults


def _api_field(one: JobSetting) -> tuple[Any, Any]:
    """(type, pydantic Field) of one setting: its limits, default and help as the table says.
    A setting whose default depends on the strategy is optional here, filled in when the
    job is queued (resolve_params)."""
    s = one.setting
    annotation, default = one.annotation, one.default
    if s.per_strategy or s.per_task:
        annotation, default = annotation | None, None
    if s.max_items is not None:  # lists arrive as JSON arrays: a list, not a tuple
        annotation = list[str] | None
    if s.choices is not None:
        annotation = Literal[s.choices]
    limits: dict[str, Any] = {}
    if s.minimum is not None:
        limits["gt" if s.exclusive_minimum else "ge"] = s.minimum
    if s.maximum is not None:
        limits["lt" if s.exclusive_maximum else "le"] = s.maximum
    if s.max_items is not None:
        limits["max_length"] = s.max_items
    return annotation, Field(default, description=s.help, title=s.label, **limits)


class JobParamsBase(BaseModel):
    """The worker's own setting; the training settings are added from the table below.
    Anything not listed is a 422, so a typo is never silently ignored; NaN and infinities
    are never a setting (and JSON cannot carry them back in an answer)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    time_limit_minutes: int | None = Field(
        None,
        ge=1,
        le=7 * 24 * 60,
        title="Time limit (minutes)",
        description="Stop the job (failed: time limit) after this many minutes of running; "
        "default TUNEBOARD_JOB_TIME_LIMIT_SECONDS",
    )


JobParams = create_model(  # type: ignore[call-overload]  # field definitions built at runtime
    "JobParams",
    __base__=JobParamsBase,
    **{one.name: _api_field(one) for one in SETTINGS},
)


def resolve_params(
    params: dict[str, Any], strategy: Strategy, task: str | None = None
) -> dict[str, Any]:
    """Fill the per-strategy and per-task defaults; auto jobs keep the strategy's open until
    the strategy is known."""
    values = dict(params)
    if strategy is Strategy.auto:
        defaults = strategy_defaults("", task)  # the task's alone
    else:
        defaults = strategy_defaults(strategy.value, task)
    if defaults:
        for name, default in defaults.items():
            if values.get(name) is None:
                values[name] = default
    return values


@dataclass(frozen=True)
class FormField:
    """One input of the new-job form, as the table describes its setting."""

    name: str
    label: str
    help: str
    # "integer", "decimal", "list" (comma-separated), "choice" (on/off/default) or "select"
    widget: str
    minimum: float | None
    maximum: float | None
    placeholder: str
    choices: tuple[str, ...] = ()
    tasks: tuple[str, ...] | None = None  # the dataset tasks it applies to (None: all)
    # What the empty field shows for a task whose default differs (max_length: generation)
    task_placeholders: dict[str, str] = field(default_factory=dict)

    @property
    def placeholders(self) -> dict[str, str]:
        """{task: placeholder}, "" for every other task: what job_form.js swaps in."""
        return {"": self.placeholder, **self.task_placeholders}


def _form_field(name: str, annotation: Any, label: str, help: str, **more: Any) -> FormField:
    kinds = set(getattr(annotation, "__args__", ())) | {annotation}
    widget = (
        "select"
        if more.get("choices")
        else "choice"
        if bool in kinds
        else "list"
        if any(getattr(k, "__origin__", None) in (tuple, list) for k in kinds)
        else "integer"
        if int in kinds
        else "decimal"
    )
    return FormField(name, label, help, widget, **more)


FORM_FIELDS: tuple[FormField, ...] = (
    *(
        _form_field(
            one.name,
            one.annotation,
            one.setting.label,
            one.setting.help,
            minimum=one.setting.minimum,
            maximum=one.setting.maximum,
            placeholder=one.setting.placeholder
            or format(one.default, "g" if not isinstance(one.default, str) else ""),
            choices=one.setting.choices or (),
            tasks=one.setting.tasks,
            task_placeholders={
                task: format(value, "g") for task, value in (one.setting.per_task or {}).items()
            },
        )
        for one in SETTINGS
    ),
    _form_field(
        "time_limit_minutes",
        int,
        "Time limit (minutes)",
        "Stop the job after this many minutes of running (empty: the server's limit).",
        minimum=1,
        maximum=7 * 24 * 60,
        placeholder="the server's limit",
    ),
)
LABELS = {f.name: f.label for f in FORM_FIELDS}  # what the form calls each setting
