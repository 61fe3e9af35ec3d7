"""Generation through the dashboard in headless Chromium, as issue 15 asks: upload a chat
JSONL, run a LoRA job, watch the Before and after panel fill, chat in the playground,
download and reload.

First the new-job form follows the dataset (language models only, frozen features and LP-FT
greyed out with the reason, LoRA preselected, gradient checkpointing and max_length's 512
shown for generation, the effective batch as it is typed). Then ONE LoRA job on a tiny
untied Llama, trained at a tiny learning rate: it stays near its random start, so its
answers run long (a model that learned to stop would end them in a few tokens) and the
panel still gets two epochs of them. On that job: the Before and after panel and curves
fill while it trains; the chat keeps its turns in the page (the second message carries the
first exchange), the answer grows in place as the predict worker writes it and the message
box clears; a file of prompts comes back as a CSV; and the ZIP the page downloads loads
with plain transformers and answers greedily exactly as the playground did.

The tests run in file order and build on each other (one server, one tab: see conftest.py).
"""

from __future__ import annotations

import re
import time
import zipfile
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.chat_data import make_tiny_causal_lm, reminder_conversations, write_chat_jsonl
from tests.e2e.conftest import Server, shot
from tests.e2e.test_tasks_path import test_first_user_signs_up as _sign_up
from tests.e2e.test_tasks_path import upload
from tests.e2e.test_user_path import assert_usable, chart_points, wait_for_status
from tests.factories import labelled_texts, write_csv

TINY_LM = "local/tiny-chat-lm-untied"
QUESTION = "Remind me to water the plants on Friday."
MAX_NEW_TOKENS = 300  # the playground's answer length, and the download's


def test_first_user_signs_up(page: Any, server: Server) -> None:
    _sign_up(page, server)


def test_form_follows_the_dataset(page: Any, server: Server, tmp_path: Path) -> None:
    # Untied, its random output layer writes varied tokens rather than echoing its input.
    make_tiny_causal_lm(server.data.parent / "models" / "tiny-chat-lm-untied", tied=False)
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


def test_before_and_after_fills_while_the_lora_job_trains(page: Any, server: Server) -> None:
    """Two epochs at a tiny learning rate: the panel gets the base model's answers and two
    epochs' worth, and the model still writes long answers for the chat to stream."""
    page.goto(f"/jobs/new?dataset_id={server.state['chats']}")
    page.locator("#model-select").select_option(TINY_LM)
    expect(page.locator('input[name="strategy"]:checked')).to_have_value("finetune_lora")
    page.get_by_text("Advanced settings").click()
    for label, value in {
        "Epochs": "2",
        "Batch size": "8",
        "Max tokens per text": "64",
        "Learning rate": "0.0000001",
    }.items():
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name="Queue job").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    server.state["job"] = int(page.url.rsplit("/", 1)[1])
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
    expect(panel).to_contain_text("After epoch 2")
    shot(page, "31-generation-before-after", "#before-after")
    page.locator("#sample-epoch").select_option("1")
    expect(page.locator("#before-after")).to_contain_text("After epoch 1")
    expect(page.locator("#test-answers tbody tr").first).to_be_visible()
    expect(page.locator(".figures")).to_contain_text("training tokens/s")
    expect(page.locator(".figures")).to_contain_text("test ROUGE-L")
    assert_usable(page)
    shot(page, "32-generation-job")


def _send(page: Any, message: str) -> None:
    page.get_by_label("Message", exact=True).fill(message)
    page.get_by_role("button", name="Send", exact=True).click()


def test_the_chat_streams_and_keeps_the_conversation(page: Any, server: Server) -> None:
    page.goto(f"/jobs/{server.state['job']}")
    expect(page.get_by_role("heading", name="Try it: chat")).to_be_visible()
    page.get_by_text("Sampling: temperature, top-p, answer length").click()
    expect(page.get_by_label("Temperature").first).to_have_value("0.7")
    page.get_by_label("Temperature").first.fill("0")  # greedy: the same answer each time
    page.get_by_label("Max new tokens").first.fill(str(MAX_NEW_TOKENS))
    assert_usable(page)

    _send(page, QUESTION)
    answer = page.locator(".turn.assistant").first
    expect(page.locator(".turn.user").first).to_contain_text(QUESTION)
    expect(page.get_by_label("Message", exact=True)).to_have_value("")  # cleared for the next
    # The answer grows in place while it is written: record the lengths it shows.
    seen = set()
    deadline = time.monotonic() + 120
    while answer.get_attribute("aria-busy") == "true" and time.monotonic() < deadline:
        seen.add(len(answer.locator(".said").inner_text()))
        time.sleep(0.05)
    expect(answer.locator('input[name="role"][value="assistant"]')).to_be_attached()
    first = answer.locator('input[name="content"]').get_attribute("value")
    assert first and first.strip()
    assert len(seen - {0}) >= 1, "no partial answer was ever shown"
    server.state["answer"] = first  # the greedy answer the download must give too

    _send(page, "And on Saturday?")
    expect(page.locator(".turn.assistant")).to_have_count(2)
    expect(page.locator('#chat-turns input[name="role"][value="assistant"]')).to_have_count(
        2, timeout=120_000
    )
    roles = page.locator('#chat-turns input[name="role"]').evaluate_all(
        "els => els.map((e) => e.value)"
    )
    assert roles == ["user", "assistant", "user", "assistant"]
    assert_usable(page)
    shot(page, "31-generation-chat", "#playground")


def test_a_file_of_prompts_comes_back_as_a_csv(page: Any, server: Server, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.csv"
    prompts.write_text(f"prompt\n{QUESTION}\nSay hello.\n")
    page.goto(f"/jobs/{server.state['job']}")
    page.locator('#playground input[type="file"]').set_input_files(prompts)
    page.get_by_role("button", name="Answer all and make a CSV").click()
    link = page.get_by_role("link", name="Download predictions (CSV)")
    expect(link).to_be_visible(timeout=120_000)
    with page.expect_download() as got:
        link.click()
    text = Path(got.value.path()).read_text()
    assert text.splitlines()[0] == "line,prompt,response,error"
    assert QUESTION in text
    assert_usable(page)


def test_the_download_reloads_and_answers_as_the_playground(
    page: Any, server: Server, tmp_path: Path
) -> None:
    """The ZIP from the page's link, loaded with plain transformers, gives the playground's
    greedy answer to the same question token for token: by generate, and by the pipeline the
    model card shows."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    page.goto(f"/jobs/{server.state['job']}")
    with page.expect_download() as got:
        page.get_by_role("link", name="Download tuned model (ZIP)").click()
    archive = tmp_path / got.value.suggested_filename
    got.value.save_as(archive)
    folder = tmp_path / "export"
    with zipfile.ZipFile(archive) as z:
        z.extractall(folder)
    assert (folder / "adapter" / "adapter_config.json").is_file()  # a LoRA job's adapters
    assert "Before and after" in (folder / "README.md").read_text()

    model = AutoModelForCausalLM.from_pretrained(str(folder / "model")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder / "model"))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    said = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert said == server.state["answer"], "the download answers otherwise than the playground"
    # And as the model card's snippet reads it: a plain pipeline, with its saved settings.
    chat = pipeline("text-generation", model=model, tokenizer=tokenizer)
    messages = [{"role": "user", "content": QUESTION}]
    piped = chat(messages, max_new_tokens=MAX_NEW_TOKENS)[0]["generated_text"][-1]["content"]
    assert piped == server.state["answer"]
