"""A generation job's playground in headless Chromium: the chat keeps its turns in the page
(the second message carries the first exchange), the answer grows in place as the predict
worker writes it, the message box clears, and a file of prompts comes back as a CSV.

The tests run in file order and build on each other (one server, one tab: see conftest.py).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.chat_data import make_tiny_causal_lm, reminder_conversations, write_chat_jsonl
from tests.e2e.conftest import Server, shot
from tests.e2e.test_tasks_path import test_first_user_signs_up as _sign_up
from tests.e2e.test_tasks_path import upload
from tests.e2e.test_user_path import assert_usable, wait_for_status

QUESTION = "Remind me to water the plants on Friday."


def test_first_user_signs_up(page: Any, server: Server) -> None:
    _sign_up(page, server)


def test_a_generation_job_trains(page: Any, server: Server, tmp_path: Path) -> None:
    """One epoch at a tiny learning rate: the model stays near its random, untied start, so
    its answers run long (one that learned to stop would end them in a few tokens)."""
    make_tiny_causal_lm(server.data.parent / "models" / "tiny-chat-lm-untied", tied=False)
    chats = upload(page, write_chat_jsonl(tmp_path / "chat.jsonl", reminder_conversations(24)))
    page.goto(f"/jobs/new?dataset_id={chats}")
    page.locator("#model-select").select_option("local/tiny-chat-lm-untied")
    page.locator('input[name="strategy"][value="finetune_full"]').check()
    page.get_by_text("Advanced settings").click()
    for label, value in {
        "Epochs": "1",
        "Batch size": "8",
        "Max tokens per text": "64",
        "Learning rate": "0.0000001",
    }.items():
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name="Queue job").click()
    expect(page).to_have_url(re.compile(r"/jobs/\d+$"))
    wait_for_status(page, server, "succeeded", timeout=300_000)
    server.state["job"] = int(page.url.rsplit("/", 1)[1])


def _send(page: Any, message: str) -> None:
    page.get_by_label("Message", exact=True).fill(message)
    page.get_by_role("button", name="Send", exact=True).click()


def test_the_chat_streams_and_keeps_the_conversation(page: Any, server: Server) -> None:
    page.goto(f"/jobs/{server.state['job']}")
    expect(page.get_by_role("heading", name="Try it: chat")).to_be_visible()
    page.get_by_text("Sampling: temperature, top-p, answer length").click()
    expect(page.get_by_label("Temperature").first).to_have_value("0.7")
    page.get_by_label("Temperature").first.fill("0")  # greedy: the same answer each time
    page.get_by_label("Max new tokens").first.fill("300")
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
