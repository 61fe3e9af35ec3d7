"""A frozen-features job's head is fitted along an L2 path (strong to weak), one metric point
per strength: its page says which strength was chosen and on what, and the curves are not read
as epochs. The job and its points are written straight to the database, as a worker would."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.db import get_sessionmaker
from app.jobs.models import Job, JobStatus
from app.jobs.strategies import Strategy
from tests.accounts import ensure_user, sign_in
from tests.factories import dataset_row
from worker import job_records

L2 = [10.0 ** (-k / 2) for k in range(6)]  # 1 … 1e-2.5
TRAIN_LOSS = [1.2, 0.9, 0.6, 0.35, 0.2, 0.1]
VAL_LOSS = [1.1, 0.8, 0.55, 0.5, 0.6, 0.7]  # lowest at the 4th strength, 10^-1.5
VAL_F1 = [0.5, 0.7, 0.8, 0.82, 0.84, 0.83]  # highest at the 5th: not the one kept


@pytest.fixture(scope="module")
def hana() -> Iterator[TestClient]:
    from app.main import app

    ensure_user("hana")
    with TestClient(app) as c:
        sign_in(c, "hana")
        yield c


def frozen_job(owner_id: int) -> int:
    search = [
        {"l2": l2, "train_loss": t, "val_loss": v, "val_accuracy": f, "val_macro_f1": f}
        | {"iterations": 40}
        for l2, t, v, f in zip(L2, TRAIN_LOSS, VAL_LOSS, VAL_F1, strict=True)
    ]
    results: dict[str, Any] = {
        "test_accuracy": 0.8,
        "test_macro_f1": 0.79,
        "val_accuracy": 0.82,
        "val_macro_f1": 0.82,
        "best_epoch": 4,
        "epochs_run": 6,
        "head_l2": L2[3],
        "head_iterations": 240,
        "head_seconds": 0.42,
        "feature_seconds": 12.0,
        "feature_cache_hit": False,
        "head_search": search,
        "wall_seconds": 15.0,
        "train_examples_per_second": 100.0,
        "trainable_params": 1540,
        "total_params": 22_700_000,
        "peak_memory_bytes": 1 << 28,
    }
    dataset = dataset_row("l2-path")
    dataset.owner_id = owner_id
    with get_sessionmaker()() as session:
        job = Job(
            owner_id=owner_id,
            dataset=dataset,
            model="minilm-l6",
            strategy=Strategy.transfer_frozen,
            params={"seed": 1},
            status=JobStatus.succeeded,
            results=results,
        )
        session.add(job)
        session.commit()
        for i, row in enumerate(search, start=1):
            values = {k: row[k] for k in ("train_loss", "val_loss", "val_accuracy")}
            values |= {"val_macro_f1": row["val_macro_f1"], "head_l2": row["l2"]}
            job_records.add_metrics(session, job.id, step=i, epoch=float(i), values=values)
        return job.id


def test_frozen_job_page_names_the_chosen_l2_strength(hana: TestClient) -> None:
    job_id = frozen_job(ensure_user("hana").id)
    for url in (f"/jobs/{job_id}", f"/jobs/{job_id}/outcome"):
        page = hana.get(url)
        assert page.status_code == 200, url
        assert "validation accuracy (head L2 3e-2, chosen on validation loss)" in page.text
        assert "(epoch 4)" not in page.text
        assert "0.4 s</span>head fit (240 L-BFGS iterations over 6 L2 strengths)" in page.text
        assert "backbone features (12 s)" in page.text
    # The path's falling training loss and rising validation loss are no overfitting warning.
    assert "Overfitting" not in hana.get(f"/jobs/{job_id}").text

    body = hana.get(f"/api/v1/jobs/{job_id}/metrics").json()
    assert body["overfitting"] is None
    path = body["series"]["head_l2"]
    assert path["epoch"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0] and path["step"] == [1, 2, 3, 4, 5, 6]
    assert path["value"] == pytest.approx(L2)
    assert body["series"]["val_loss"]["value"] == pytest.approx(VAL_LOSS)
