"""A generation job through the dashboard in headless Chromium: the new-job form following
the dataset (language models only, frozen features and LP-FT greyed out with the reason,
LoRA preselected, gradient checkpointing and max_length's 512 shown for generation, the
effective batch as it is typed), then a LoRA job on a tiny Llama whose Before and after panel
and curves fill while it trains, and its results.

The tests run in file order and build on each other (one server, one tab: see conftest.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.chat_data import make_tiny_causal_lm, reminder_conversations, write_chat_jsonl
from tests.e2e.conftest import Server, shot
from tests.e2e.test_tasks_path import test_first_user_signs_up as _sign_up
from tests.e2e.test_tasks_path import upload
from tests.e2e.test_user_path import assert_usable, chart_points, wait_for_status
from tests.factories import labelled_texts, write_csv

TINY_LM = "local/tiny-chat-lm"


def test_first_user_signs_up(page: Any, server: Server) -> None:
    _sign_up(page, server)


def test_form_follows_the_dataset(page: Any, server: Server, tmp_path: Path) -> None:
    make_tiny_causal_lm(server.data.parent / "models" / "tiny-chat-lm")  # the model root
    table = upload(page, write_csv(tmp_path / "topics.csv", labelled_texts(10)))
    chats = upload(page, write_chat_jsonl(tmp_path / "chat.jsonl", reminder_conversations(60)))
    server.state["chats"] = chats
    page.goto(f"/jobs/new?dataset_id={table}")
    frozen = page.locator('input[name="strategy"][value="transfer_frozen"]')
    expect(frozen).to_be_checked()
    page.get_by_text("Advanced settings").click()
    checkpointing = page.locator('select[name="gradient_checkpointing"]')
    expect(checkpointing).to_be_hidden()

    page.locator('select[name="dataset_id"]').select_option(str(chats))
    # A language model is chosen for it; the encoders cannot be.
    expect(page.locator("#model-select")).to_have_value(re.compile(r"smollm2|tiny-chat-lm"))
    expect(page.locator('optgroup[data-modality="text"]')).to_be_disabled()
    expect(frozen).to_be_disabled()
    expect(page.locator('input[name="strategy"][value="lp_ft"]')).to_be_disabled()
    expect(
        page.locator('#strategy-choice [data-strategy="transfer_frozen"] .not-offered')
    ).to_contain_text("Not for generation: A language model answers through its own output layer")
    expect(page.locator('input[name="strategy"][value="finetune_lora"]')).to_be_checked()
    expect(page.locator('input[name="compare_strategies"][value="lp_ft"]')).to_be_disabled()
    expect(checkpointing).to_be_visible()
    expect(page.locator('input[name="max_length"]')).to_have_attribute("placeholder", "512")
    page.get_by_label("Batch size", exact=True).fill("8")
    page.get_by_label("Gradient accumulation steps", exact=True).fill("4")
    expect(page.locator("#effective-batch")).to_contain_text("8 × 4 = 32")
    assert_usable(page)
    shot(page, "30-generation-new-job")

    # Back to the table: its own defaults return.
    page.locator('select[name="dataset_id"]').select_option(str(table))
    expect(frozen).to_be_enabled()
    expect(frozen).to_be_checked()
    expect(checkpointing).to_be_hidden()
    expect(page.locator('input[name="compare_strategies"][value="lp_ft"]')).to_be_checked()


def test_before_and_after_fills_while_the_job_trains(page: Any, server: Server) -> None:
    page.goto(f"/jobs/new?dataset_id={server.state['chats']}")
    page.locator("#model-select").select_option(TINY_LM)
    page.get_by_text("Advanced settings").click()
    for label, value in {
        "Epochs": "3",
        "Batch size": "8",
        "Max tokens per text": "64",
        "Learning rate": "0.01",
    }.items():
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name="Queue job").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    panel = page.locator("#before-after")
    # The base model's answers come first, then an epoch's, while the job still runs.
    expect(panel.locator("tbody tr").first).to_be_visible(timeout=120_000)
    expect(panel).to_contain_text("After epoch", timeout=120_000)
    wait_for_status(page, server, "succeeded", timeout=300_000)
    assert chart_points(page) >= 6
    expect(page.locator('[data-chart="quality"] .u-title')).to_have_text("Validation perplexity")
    expect(page.locator('[data-chart="quality-1"] .u-title')).to_have_text(
        "Validation ROUGE-L of the samples"
    )
    expect(panel).to_contain_text("After epoch 3")
    shot(page, "31-generation-before-after", "#before-after")
    page.locator("#sample-epoch").select_option("1")
    expect(page.locator("#before-after")).to_contain_text("After epoch 1")
    expect(page.locator("#test-answers tbody tr").first).to_be_visible()
    expect(page.locator(".figures")).to_contain_text("training tokens/s")
    expect(page.locator(".figures")).to_contain_text("test ROUGE-L")
    assert_usable(page)
    shot(page, "32-generation-job")
