"""What a person sees of a generation job outside the playground: the new-job form (language
models only, frozen features and LP-FT greyed out with the reason, LoRA preselected, the
generation settings), the job page's curves, its Before and after panel (live while the job
runs, per epoch after) and test answers, the samples API, and a comparison ranked by loss.
A tiny Llama with SmolLM2's tokenizer learns reminder rewrites through real workers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.chat_data import make_tiny_causal_lm, reminder_conversations, write_chat_jsonl
from tests.conftest import MODELS
from tests.factories import labelled_texts, write_csv
from tests.jobs_api import run_job, upload_csv
from tests.processes import wait_for

TINY_LM = "local/tiny-chat-lm"


@pytest.fixture(scope="module")
def tiny_lm() -> str:
    folder = MODELS / "tiny-chat-lm"
    if not (folder / "config.json").exists():
        make_tiny_causal_lm(folder)
    return TINY_LM


@pytest.fixture(scope="module")
def chats(client: TestClient, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("chats")
    path = write_chat_jsonl(folder / "reminders.jsonl", reminder_conversations(60))
    return upload_csv(client, path, name="reminders")


@pytest.fixture(scope="module")
def finished(client: TestClient, chats: dict, tiny_lm: str, worker: Path) -> dict[str, Any]:
    """A LoRA job of two epochs on the tiny model, run to the end by the real worker."""
    body = {
        "dataset_id": chats["id"],
        "model": tiny_lm,
        "strategy": "finetune_lora",
        "params": {"epochs": 2, "batch_size": 8, "max_length": 64, "learning_rate": 0.01},
    }
    job = run_job(client, body, timeout=300)
    assert job["status"] == "succeeded", (job["error"], worker.read_text()[-3000:])
    return job


def strategy_label(form: str, strategy: str) -> str:
    """The form's <label> of one strategy radio."""
    found = re.search(
        rf'<label class="choice" data-strategy="{strategy}">.*?</label>', form, re.DOTALL
    )
    assert found, strategy
    return found.group(0)


def test_form_offers_a_generation_dataset_its_models_strategies_and_settings(
    client: TestClient, chats: dict, tiny_lm: str
) -> None:
    form = client.get(f"/jobs/new?dataset_id={chats['id']}").text
    assert 'data-kind="generation" data-task="generation" selected' in form
    # Only the language models can be chosen; the encoders' group is greyed out and hidden.
    assert '<optgroup label="Language models (generation)" data-modality="generation">' in form
    assert '<optgroup label="Text models" data-modality="text" disabled hidden>' in form
    assert f'value="{tiny_lm}"' in form and 'value="smollm2-135m-instruct"' in form
    # Frozen features and LP-FT are greyed out with the task's reason; LoRA is preselected.
    frozen = strategy_label(form, "transfer_frozen")
    assert " disabled>" in frozen and "Not for generation: A language model answers" in frozen
    assert " disabled>" in strategy_label(form, "lp_ft")
    assert 'value="finetune_lora" checked' in strategy_label(form, "finetune_lora")
    assert "disabled" not in strategy_label(form, "transfer_top_k")
    # The comparison's boxes: the same two cannot be ticked.
    assert re.search(r'value="transfer_frozen" disabled> ', form)
    assert re.search(r'value="finetune_full" checked> ', form)
    # Generation's own setting shows; max_length's placeholder is generation's default.
    assert '<div class="setting" data-tasks="generation">' in form
    assert 'name="max_length"' in form and 'placeholder="512"' in form
    assert "Effective batch: <strong>16 × 1 = 16</strong> rows per optimizer step." in form
    fragment = client.get(
        "/jobs/recommendation", params={"dataset_id": chats["id"], "model": tiny_lm}
    ).text
    assert "Auto would pick Fine-tuning — LoRA adapters" in fragment
    assert "training conversations" in fragment


def test_form_for_a_classification_dataset_hides_generation(
    client: TestClient, tmp_path: Path
) -> None:
    dataset = upload_csv(client, write_csv(tmp_path / "t.csv", labelled_texts(10)))
    form = client.get(f"/jobs/new?dataset_id={dataset['id']}").text
    assert (
        '<optgroup label="Language models (generation)" data-modality="generation" disabled hidden>'
        in form
    )
    assert '<div class="setting" data-tasks="generation" hidden>' in form
    assert 'value="transfer_frozen" checked' in strategy_label(form, "transfer_frozen")
    assert 'placeholder="128 (generation: 512)"' in form


def test_strategies_generation_does_not_offer_are_refused(
    client: TestClient, chats: dict, tiny_lm: str
) -> None:
    body = {"dataset_id": chats["id"], "model": tiny_lm, "strategy": "transfer_frozen"}
    response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == 422
    assert "transfer_frozen does not apply to generation" in response.json()["detail"]
    compare = {
        "dataset_id": chats["id"],
        "model": tiny_lm,
        "strategies": ["lp_ft", "finetune_lora"],
    }
    response = client.post("/api/v1/comparisons", json=compare)
    assert response.status_code == 422 and "lp_ft does not apply" in response.json()["detail"]
    # The form says the same beside itself.
    form = {"dataset_id": str(chats["id"]), "model": tiny_lm, "strategy": "lp_ft"}
    page = client.post("/jobs", data=form)
    assert page.status_code == 422 and "lp_ft does not apply to generation" in page.text
    encoder = client.post(
        "/api/v1/jobs", json={**body, "model": "minilm-l6", "strategy": "finetune_lora"}
    )
    assert encoder.status_code == 422 and "a language model" in encoder.json()["detail"]


def test_panel_fills_while_the_job_runs(client: TestClient, chats: dict) -> None:
    """A running job whose base model has answered and one epoch has ended: the fragment
    shows both and keeps polling; before any answer it says what will come."""
    from app.config import get_settings
    from app.db import get_sessionmaker
    from app.jobs.artifacts import job_dir
    from app.jobs.models import Job, JobStatus
    from app.jobs.strategies import Strategy
    from worker.training import job_files

    with get_sessionmaker()() as session:
        job = Job(
            owner_id=chats["owner_id"],
            dataset_id=chats["id"],
            model=TINY_LM,
            strategy=Strategy.finetune_lora,
            params={},
            status=JobStatus.running,
        )
        session.add(job)
        session.commit()
        job_id = job.id
    url = f"/jobs/{job_id}/samples"
    empty = client.get(url).text
    assert 'hx-trigger="every 3s"' in empty and "appear here as they are written" in empty
    assert client.get(f"/api/v1/jobs/{job_id}/samples").status_code == 404
    rows = [
        {
            "index": 3,
            "text": "Remind me to <b>bake</b> bread on Friday.",
            "reference": "FRIDAY: bake bread",
        }
    ]
    samples = {"rows": rows, "base": ["I am a language model"], "epochs": {}}
    folder = job_dir(get_settings(), job_id)
    folder.mkdir(parents=True, exist_ok=True)
    job_files.samples(folder).write_text(json.dumps(samples))
    base_only = client.get(url).text
    assert "I am a language model" in base_only and "after the first epoch" in base_only
    assert "&lt;b&gt;bake&lt;/b&gt;" in base_only  # prompts are text, never markup
    samples["epochs"] = {"1": ["FRIDAY: bake"]}
    job_files.samples(folder).write_text(json.dumps(samples))
    page = client.get(f"/jobs/{job_id}").text
    assert 'id="before-after"' in page and "After epoch 1" in page and "FRIDAY: bake<" in page
    assert 'hx-trigger="every 3s"' in page
    assert client.get(f"/api/v1/jobs/{job_id}/samples").json() == samples
    with get_sessionmaker()() as session:  # no worker runs it: it must not look lost
        session.get(Job, job_id).status = JobStatus.cancelled
        session.commit()


def test_finished_job_page_shows_before_and_after_and_test_answers(
    client: TestClient, finished: dict
) -> None:
    job_id = finished["id"]
    r = finished["results"]
    assert r["headline_metric"] == "test_loss" and r["headline_higher_is_better"] is False
    page = client.get(f"/jobs/{job_id}").text
    # The curves: loss, then perplexity and the samples' ROUGE-L on charts of their own.
    assert 'data-headline="val_loss" data-higher="0"' in page
    assert 'data-title="Validation perplexity"' in page
    assert 'data-title="Validation ROUGE-L of the samples"' in page
    # Before and after: every sample prompt with the base answer, the last epoch's, the
    # reference; finished, so no more polling.
    samples = client.get(f"/api/v1/jobs/{job_id}/samples").json()
    assert set(samples["epochs"]) == {"1", "2"} and samples["base"]
    panel = page[
        page.index('id="before-after"') : page.index("</section>", page.index('id="before-after"'))
    ]
    assert "every 3s" not in panel and "After epoch 2" in panel
    for row in samples["rows"]:
        assert _html(row["reference"]) in panel
    first = client.get(f"/jobs/{job_id}/samples", params={"epoch": "1"}).text
    assert "After epoch 1" in first and '<option value="1" selected>' in first
    # Test scores as percents, tokens/s and the answers table.
    assert re.search(r"\d+\.\d%</span>test ROUGE-L", page)
    assert "test chrF" in page and "test exact match" in page and "test perplexity" in page
    assert "training tokens/s" in page and "peak memory" in page
    assert 'id="test-answers"' in page
    for row in r["test_answers"]:
        assert _html(row["reference"]) in page
    assert "adapter/" in page  # the LoRA download's adapters, named beside the button


def test_command_line_words_a_generation_job(client: TestClient, finished: dict) -> None:
    """`tuneboard jobs show` (and the end of `jobs run`): the loss first, lower is better,
    then the answer scores as percents, the costs and a sample answer."""
    from app.cli_results import job_lines

    lines = job_lines(client.get(f"/api/v1/jobs/{finished['id']}").json())
    assert lines[0].startswith(f"job {finished['id']}: succeeded · finetune_lora")
    assert re.fullmatch(
        r"  test loss [\d.]+ \(headline: loss, lower is better\); chrf [\d.]+%, "
        r"exact match [\d.]+%, perplexity [\d.e+]+, rouge l [\d.]+%",
        lines[1],
    ), lines[1]
    assert "training tokens/s" in lines[2] and "peak memory" in lines[2]
    assert lines[3].startswith("  e.g. ") and " → " in lines[3]


def test_samples_api_is_for_generation_jobs_only(client: TestClient, tmp_path: Path) -> None:
    from app.db import get_sessionmaker
    from app.jobs.models import Job, JobStatus
    from app.jobs.strategies import Strategy

    dataset = upload_csv(client, write_csv(tmp_path / "s.csv", labelled_texts(10)))
    with get_sessionmaker()() as session:
        job = Job(
            owner_id=dataset["owner_id"],
            dataset_id=dataset["id"],
            model="m",
            strategy=Strategy.transfer_frozen,
            params={},
            status=JobStatus.succeeded,
        )
        session.add(job)
        session.commit()
        job_id = job.id
    response = client.get(f"/api/v1/jobs/{job_id}/samples")
    assert response.status_code == 404
    assert "only generation writes samples" in response.json()["detail"]


def test_comparison_of_generation_strategies_ranks_by_loss(
    client: TestClient, chats: dict, tiny_lm: str, worker: Path
) -> None:
    body = {
        "dataset_id": chats["id"],
        "model": tiny_lm,
        "params": {"epochs": 1, "batch_size": 8, "max_length": 64},
    }
    response = client.post("/api/v1/comparisons", json=body)
    assert response.status_code == 201, response.text
    comparison = response.json()
    # Left to its default, a comparison holds the strategies generation offers.
    strategies = [row["job"]["strategy"] for row in comparison["rows"]]
    assert strategies == ["transfer_top_k", "finetune_full", "finetune_lora"]
    assert comparison["metric"] == "loss"
    # Two runs are enough to rank; a cancelled one is left out of the verdict.
    client.post(f"/api/v1/jobs/{comparison['rows'][1]['job']['id']}/cancel")
    url = f"/api/v1/comparisons/{comparison['id']}"
    done = wait_for(lambda: (c := client.get(url).json())["finished"] and c, timeout=300, what=url)
    ran = [row for row in done["rows"] if row["job"]["strategy"] != "finetune_full"]
    assert all(row["job"]["status"] == "succeeded" for row in ran), worker.read_text()[-3000:]
    losses = {row["job"]["id"]: row["metric"] for row in ran}
    assert done["winner_job_id"] == min(losses, key=losses.__getitem__)
    assert all(row["scores"]["rouge_l"] is not None for row in ran)
    page = client.get(f"/comparisons/{comparison['id']}").text
    assert "Test loss" in page and "ROUGE-L" in page and "chrF" in page and "Tokens/s" in page
    assert '<option value="val_loss" selected>' in page


def _html(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))
