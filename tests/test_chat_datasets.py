"""Generation datasets through the API and the real ingest worker: chat files and prompt/
response tables detected or named, bad rows refused by line with nothing kept, the system
prompt, the token-length report under the packaged SmolLM2's chat template, the column
change, separate validation files, the dataset page and what training reads back."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from app.config import get_settings
from app.datasets.models import Dataset
from app.datasets.training_data import load_training_data
from app.db import get_sessionmaker
from tests.chat_data import reminder_conversations
from tests.jobs_api import CHECKED, wait_checked

Conversation = list[dict[str, str]]
CHATS = reminder_conversations(60)
# Long enough to outweigh SmolLM2's own default system prompt, which the template adds to
# conversations without one: the token counts must grow when it is given.
SYSTEM = (
    "You are a scheduling assistant for a busy household. Read each request carefully and "
    "answer with the day of the week in capital letters, a colon, and the chore in a few "
    "plain words, with nothing else before or after it, so that the answer can be read "
    "aloud by a kitchen speaker."
)


def chat_jsonl(conversations: list[Conversation]) -> bytes:
    return "".join(json.dumps({"messages": c}) + "\n" for c in conversations).encode()


def table(header: tuple[str, ...], rows: list[tuple[Any, ...]], delimiter: str = ",") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def pairs(n: int = 40) -> list[tuple[str, str]]:
    return [(c[0]["content"], c[1]["content"]) for c in CHATS[:n]]


def upload(
    client: TestClient,
    filename: str,
    content: bytes,
    validation: tuple[str, bytes] | None = None,
    **form: str,
) -> Response:
    files = {"file": (filename, content)}
    if validation is not None:
        files["validation_file"] = validation
    return client.post("/api/v1/datasets", files=files, data=form, params=CHECKED)


def created(response: Response) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return response.json()


def errors(response: Response) -> dict[str, list[int]]:
    assert response.status_code == 422, response.text
    return {e["code"]: e["lines"] for e in response.json()["errors"]}


def names(client: TestClient) -> set[str]:
    return {d["name"] for d in client.get("/api/v1/datasets").json()}


def chosen(body: dict[str, Any]) -> tuple[str, str, str]:
    return body["task"], body["text_column"], body["label_column"]


def change(client: TestClient, dataset_id: int, **body: Any) -> Response:
    return client.put(f"/api/v1/datasets/{dataset_id}/columns", json=body)


def test_a_chat_file_is_generation_with_its_token_lengths(client: TestClient) -> None:
    multi = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Remind me to buy milk on Monday."},
        {"role": "assistant", "content": "MONDAY: buy milk"},
        {"role": "user", "content": "And bake bread on Friday."},
        {"role": "assistant", "content": "FRIDAY: bake bread"},
    ]
    body = created(upload(client, "chats.jsonl", chat_jsonl([*CHATS, multi])))
    assert chosen(body) == ("generation", "messages", "")
    assert (body["columns"], body["label_names"], body["system_prompt"]) == (["messages"], [], None)
    assert body["num_rows"] == 61 and body["report"]["errors"] == []
    summary = body["report"]["labels"]
    assert (summary["format"], summary["conversations"], summary["multi_turn"]) == ("chat", 61, 1)
    assert summary["with_system"] == 1 and summary["assistant_turns"] == 62

    tokens = body["report"]["token_lengths"]
    assert tokens["tokenizer"] == "SmolLM2-135M-Instruct" and tokens["rows"] == 61
    assert sum(tokens["histogram"]["counts"]) == 61
    assert len(tokens["histogram"]["edges"]) == len(tokens["histogram"]["counts"]) + 1
    # ChatML markers and SmolLM2's default system prompt around a short sentence or two.
    assert 20 < tokens["p50"] <= tokens["p95"] <= tokens["max"] < 128
    assert tokens["truncated"] == {"128": 0, "256": 0, "512": 0, "1024": 0, "2048": 0}
    assert tokens["suggested_max_length"] % 32 == 0
    assert tokens["p95"] <= tokens["suggested_max_length"] < tokens["p95"] + 32

    assert len(body["preview"]) == 20
    assert body["preview"][0] == {"line": 1, "messages": CHATS[0]}

    page = client.get(f"/datasets/{body['id']}").text
    assert 'class="bubble user"' in page and 'class="bubble assistant"' in page
    assert 'data-view="tokens"' in page and "Suggested maximum length" in page
    assert "no columns to choose" in page  # a chat file: only the system prompt changes


@pytest.mark.parametrize(
    ("filename", "header", "delimiter"),
    [
        ("alpaca.csv", ("Instruction", "Output", "id"), ","),
        ("qa.tsv", ("question", "ANSWER"), "\t"),
        ("completions.jsonl", ("prompt", "completion"), None),  # a JSONL table: line 4
    ],
)
def test_prompt_and_response_columns_are_detected(
    client: TestClient, filename: str, header: tuple[str, ...], delimiter: str | None
) -> None:
    rows = [(p, r, i)[: len(header)] for i, (p, r) in enumerate(pairs())]
    rows[3] = (rows[3][0], "", *rows[3][2:])  # line 5 of a table (4 of JSONL): no response
    if delimiter is None:
        content = "".join(json.dumps(dict(zip(header, r, strict=True))) + "\n" for r in rows)
        body = created(upload(client, filename, content.encode()))
    else:
        body = created(upload(client, filename, table(header, rows, delimiter)))
    assert body["task"] == "generation"
    assert (body["text_column"], body["label_column"]) == header[:2]
    assert body["num_rows"] == 39 and body["report"]["parts"] == {"train": 39}
    warnings = {w["code"]: w["lines"] for w in body["report"]["warnings"]}
    assert warnings["missing_responses"] == [5 if delimiter else 4]
    assert body["preview"][0]["messages"][1] == {"role": "assistant", "content": pairs()[0][1]}
    assert body["report"]["token_lengths"]["rows"] == 39


def test_named_columns_and_the_system_prompt(client: TestClient) -> None:
    content = table(("ask", "reply", "note"), [(p, r, "x") for p, r in pairs()])
    named = {"prompt_column": "ASK", "response_column": "reply"}
    plain = created(upload(client, "named.csv", content, **named))
    assert chosen(plain) == ("generation", "ask", "reply")

    halves = table(("ask", "Response"), [(p, r) for p, r in pairs()])
    given = created(
        upload(client, "system.csv", halves, prompt_column="ask", system_prompt=f"  {SYSTEM}\n")
    )
    assert given["system_prompt"] == SYSTEM and given["label_column"] == "Response"  # detected
    # Every conversation is counted with the system prompt first.
    with_system, without = given["report"]["token_lengths"], plain["report"]["token_lengths"]
    assert with_system["p50"] > without["p50"] + 20
    page = client.get(f"/datasets/{given['id']}").text
    assert "System prompt, for every conversation without its own" in page

    refused = upload(client, "named.csv", content, prompt_column="ask", task="classification")
    assert refused.status_code == 422 and "prompt_column" in refused.json()["detail"]
    unknown = upload(client, "named.csv", content, prompt_column="nope", response_column="reply")
    assert unknown.status_code == 422 and "no column named 'nope'" in unknown.json()["detail"]


def test_bad_rows_are_refused_by_line_and_nothing_is_kept(client: TestClient) -> None:
    lines = [json.dumps({"messages": c}) for c in CHATS[:6]]
    lines[2] = json.dumps({"messages": [{"role": "bot", "content": "hi"}, *CHATS[2][1:]]})
    lines[4] = json.dumps({"messages": [*CHATS[4], {"role": "user", "content": "and?"}]})
    response = upload(client, "bad.jsonl", "\n".join(lines).encode(), name="bad-chats")
    assert errors(response) == {"unknown_role": [3], "wrong_order": [5]}
    assert response.json()["detail"].startswith("line 3: message 1 has role 'bot'")

    empty = table(("prompt", "response"), [("a", ""), ("", "b")])
    response = upload(client, "empty.csv", empty, name="bad-table")
    assert errors(response) == {"no_usable_rows": []}
    assert "response" in response.json()["detail"]
    named = upload(client, "chats.jsonl", chat_jsonl(CHATS[:5]), task="regression")
    assert named.status_code == 422 and "only the generation task" in named.json()["detail"]
    assert not names(client) & {"bad-chats", "bad-table"}


def test_the_columns_change_and_are_counted_again(client: TestClient) -> None:
    rows = [(p, r, f"{p} Please be quick about it, thank you.") for p, r in pairs()]
    body = created(upload(client, "swap.csv", table(("question", "answer", "context"), rows)))
    assert body["text_column"] == "question"
    before = body["report"]["token_lengths"]["p50"]

    changed = change(client, body["id"], text_column="context", label_column="answer")
    assert changed.status_code == 200, changed.text
    assert changed.json()["status"] == "checking"  # the worker counts the tokens again
    after = wait_checked(client, body["id"])
    assert after["status"] == "ready" and chosen(after) == ("generation", "context", "answer")
    assert after["preview"][0]["messages"][0]["content"] == rows[0][2]
    assert after["report"]["token_lengths"]["p50"] > before

    wrong = change(client, body["id"], text_column="nowhere", label_column="answer")
    assert wrong.status_code == 422 and "nowhere" in wrong.json()["detail"]
    same = change(client, body["id"], text_column="answer", label_column="answer")
    assert same.status_code == 422 and "both the prompt and the response" in same.text
    kept = client.get(f"/api/v1/datasets/{body['id']}").json()
    assert (kept["status"], kept["text_column"]) == ("ready", "context")

    system = change(
        client, body["id"], text_column="context", label_column="answer", system_prompt=SYSTEM
    )
    assert system.status_code == 200, system.text
    assert wait_checked(client, body["id"])["system_prompt"] == SYSTEM
    change(client, body["id"], text_column="context", label_column="answer", system_prompt="")
    assert wait_checked(client, body["id"])["system_prompt"] is None

    chats = created(upload(client, "fixed.jsonl", chat_jsonl(CHATS[:10])))
    fixed = change(client, chats["id"], text_column="x", label_column="y")
    assert fixed.status_code == 422 and "no columns to choose" in fixed.json()["detail"]


def test_a_separate_validation_file_and_what_training_reads(client: TestClient) -> None:
    train, validation = CHATS[:40], CHATS[40:]
    body = created(
        upload(
            client,
            "train.jsonl",
            chat_jsonl(train),
            ("val.jsonl", chat_jsonl(validation)),
            system_prompt=SYSTEM,
        )
    )
    assert body["report"]["parts"] == {"train": 40, "validation": 20}
    assert body["report"]["token_lengths"]["rows"] == 60  # every file is counted
    with get_sessionmaker()() as session:
        data = load_training_data(session.get(Dataset, body["id"]), get_settings(), seed=1)
    system = {"role": "system", "content": SYSTEM}
    assert data.texts == [[system, *c] for c in train + validation]
    assert data.labels == [c[-1]["content"] for c in train + validation]
    assert data.label_names == [] and data.text_pairs is None
    assert data.validation_idx == list(range(40, 60))  # the file, after the training rows
    assert sorted(data.train_idx + data.test_idx) == list(range(40)) and data.test_idx

    bad = chat_jsonl(validation[:1]) + b'{"messages": []}\n'
    response = upload(client, "train.jsonl", chat_jsonl(train), ("val.jsonl", bad))
    assert errors(response) == {"empty_conversation": [2]}
    assert response.json()["detail"].startswith("validation file: line 2:")
    csv_validation = ("val.csv", table(("prompt", "response"), pairs(3)))
    response = upload(client, "train.jsonl", chat_jsonl(train), csv_validation)
    assert response.status_code == 422 and "same kind" in response.json()["detail"]


def test_the_page_form_changes_generation_and_reloads_to_follow_the_check(
    client: TestClient,
) -> None:
    body = created(upload(client, "page.csv", table(("question", "answer"), pairs(20))))
    url = f"/datasets/{body['id']}/columns"
    page = client.get(f"/datasets/{body['id']}").text
    assert "Prompt column" in page and "Response column" in page and "writes answer" in page
    form = {"text_column": "question", "label_column": "answer", "task": "generation"}
    changed = client.post(url, data={**form, "system_prompt": "Be brief."})
    assert changed.status_code == 200 and changed.headers["HX-Refresh"] == "true"
    assert wait_checked(client, body["id"])["system_prompt"] == "Be brief."
    refused = client.post(url, data={**form, "text_column": "answer"})
    assert refused.status_code == 422 and "previous choice is kept" in refused.text

    chats = created(upload(client, "page.jsonl", chat_jsonl(CHATS[:10])))
    chat_form = {"text_column": "messages", "label_column": "", "system_prompt": "Hi."}
    changed = client.post(f"/datasets/{chats['id']}/columns", data=chat_form)
    assert changed.status_code == 200, changed.text
    assert wait_checked(client, chats["id"])["system_prompt"] == "Hi."
    assert "Generation — a response per prompt" in client.get("/datasets").text
