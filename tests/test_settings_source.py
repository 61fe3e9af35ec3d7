"""One table of settings (worker/training/hyperparameters.py) and the three places that read
it: the API's JobParams, the new-job form and the worker's spec check must agree on the
names, the defaults and the limits — for every setting, without a list typed twice."""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.db import get_sessionmaker
from app.jobs.params import FORM_FIELDS, JobParams, resolve_params
from app.jobs.strategies import CONCRETE, Strategy
from app.workers import service as workers
from tests.factories import labelled_texts, write_csv
from tests.jobs_api import upload_csv
from worker.training.hyperparameters import (
    AUTO,
    SETTINGS,
    STRATEGIES,
    STRATEGY_TEXT,
    JobSetting,
    TrainParams,
    check_params,
)

NAMES = {one.name for one in SETTINGS}
WORKER_ONLY = {"time_limit_minutes"}  # the worker's own limit, not a training setting


def test_the_api_the_form_and_the_spec_know_the_same_settings(
    client: TestClient, tmp_path: Path
) -> None:
    schema = JobParams.model_json_schema()["properties"]
    assert set(schema) == NAMES | WORKER_ONLY
    assert {f.name for f in FORM_FIELDS} == NAMES | WORKER_ONLY
    assert [s.value for s in CONCRETE] == list(STRATEGIES)
    assert {s.value for s in Strategy} == set(STRATEGY_TEXT) == {*STRATEGIES, AUTO}

    dataset = upload_csv(client, write_csv(tmp_path / "s.csv", labelled_texts(10)))
    # "devices" is offered while a live worker has several device slots: one has here.
    with get_sessionmaker()() as session:
        workers.beat(
            session, worker_id="two-slots:1", hostname="two-slots", pid=1, queues=["gpu"],
            device="cuda: 2 × test GPU", device_count=2,
        )  # fmt: skip
    try:
        form = client.get(f"/jobs/new?dataset_id={dataset['id']}").text
    finally:
        with get_sessionmaker()() as session:
            workers.leave(session, "two-slots:1")
    advanced = form.split("<summary>Advanced settings</summary>", 1)[1].split("</details>")[0]
    rendered = set(re.findall(r'<(?:input|select) name="([a-z_]+)"', advanced))
    assert rendered == NAMES | WORKER_ONLY
    for one in SETTINGS:  # the form's bounds are the table's
        s = one.setting
        if any(f.widget == "integer" and f.name == one.name for f in FORM_FIELDS):
            tag = re.search(rf'<input name="{one.name}"[^>]*>', advanced)
            assert tag is not None
            if s.minimum is not None:
                assert f'min="{int(s.minimum)}"' in tag.group(0)
            if s.maximum is not None:
                assert f'max="{int(s.maximum)}"' in tag.group(0)
        assert s.label in html.unescape(advanced) and s.help in html.unescape(advanced)


def test_defaults_agree_between_the_api_and_the_spec() -> None:
    api = JobParams().model_dump()
    spec = TrainParams()
    for one in SETTINGS:
        # Filled in per strategy (or per task) when the job is queued.
        if one.setting.per_strategy or one.setting.per_task:
            assert api[one.name] is None
            continue
        assert api[one.name] == getattr(spec, one.name), one.name
    for strategy in CONCRETE:
        resolved = resolve_params(api, strategy)
        epochs = TrainParams.__dataclass_fields__["epochs"].metadata["setting"].per_strategy
        assert resolved["epochs"] == (epochs or {}).get(strategy.value), strategy
    # A generation dataset's jobs read more tokens by default than an encoder can.
    assert resolve_params(api, CONCRETE[0], "generation")["max_length"] == 512
    assert resolve_params(api, CONCRETE[0], "classification")["max_length"] == 128
    assert resolve_params(api, Strategy.auto)["epochs"] is None  # resolved in the worker


def _edges(one: JobSetting) -> list[tuple[Any, bool]]:
    """(value, allowed) pairs at both bounds of a numeric setting."""
    s, integer = one.setting, int in getattr(one.annotation, "__args__", (one.annotation,))
    step = 1 if integer else 1e-9
    cases = []
    if s.minimum is not None:
        cases.append((s.minimum, not s.exclusive_minimum))
        cases.append((s.minimum - step, False))
    if s.maximum is not None:
        cases.append((s.maximum, not s.exclusive_maximum))
        cases.append((s.maximum + step, False))
    return [(int(v) if integer else v, ok) for v, ok in cases if not math.isinf(v)]


@pytest.mark.parametrize("one", [o for o in SETTINGS if _edges(o)], ids=lambda o: o.name)
def test_the_api_and_the_spec_check_refuse_the_same_values(one: JobSetting) -> None:
    for value, allowed in _edges(one):
        try:
            JobParams(**{one.name: value})
            api_ok = True
        except ValidationError:
            api_ok = False
        try:
            check_params(TrainParams(**{one.name: value}))
            spec_ok = True
        except ValueError:
            spec_ok = False
        assert (api_ok, spec_ok) == (allowed, allowed), (one.name, value)
