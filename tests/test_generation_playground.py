"""A generation job's playground, API and batch with real processes: the training worker
trains a tiny Llama (SmolLM2's tokenizer) on chat data, the predict workers answer from its
export, and the web only reads the rows they write. Greedy answers are what the downloaded
folder generates; the stream arrives in pieces; bad questions get a 422 or 409 saying what
to send."""

from __future__ import annotations

import csv
import io
import json
import re
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.chat_data import make_tiny_causal_lm, reminder_conversations, write_chat_jsonl
from tests.conftest import MODELS
from tests.factories import labelled_texts, write_csv
from tests.jobs_api import export_folder, run_job, upload_csv
from tests.processes import wait_for

QUESTION = "Remind me to water the plants on Friday."
GREEDY = {"temperature": 0, "max_new_tokens": 12}


@pytest.fixture(scope="module")
def job(
    client: TestClient, worker: Path, predictor: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A full fine-tuning job of one epoch at a tiny learning rate: the real path end to end,
    while the model stays close to its random, untied start, so its answers run long and
    varied (a model that learned to stop would end every answer in a few tokens)."""
    folder = MODELS / "tiny-chat-lm-untied"
    if not (folder / "config.json").exists():
        make_tiny_causal_lm(folder, tied=False)
    chats = write_chat_jsonl(
        tmp_path_factory.mktemp("chats") / "reminders.jsonl", reminder_conversations(24)
    )
    dataset = upload_csv(client, chats)
    assert dataset["task"] == "generation"
    body = {
        "dataset_id": dataset["id"],
        "model": "local/tiny-chat-lm-untied",
        "strategy": "finetune_full",
        "params": {"epochs": 1, "batch_size": 8, "max_length": 64, "learning_rate": 1e-7},
    }
    done = run_job(client, body, timeout=300)
    assert done["status"] == "succeeded", (done["error"], worker.read_text()[-3000:])
    return done


def _generate(client: TestClient, job_id: int, **body: Any) -> dict[str, Any]:
    response = client.post(f"/api/v1/jobs/{job_id}/generate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_greedy_answers_are_what_the_download_generates(
    client: TestClient, predictor: Path, job: dict, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    answer = _generate(client, job["id"], prompt=QUESTION, **GREEDY)
    assert answer["status"] == "succeeded" and answer["done"], predictor.read_text()[-2000:]
    assert answer["text"].strip() and answer["finish_reason"] in ("stop", "length")
    messages = [{"role": "user", "content": QUESTION}]
    assert _generate(client, job["id"], messages=messages, **GREEDY)["text"] == answer["text"]

    folder = export_folder(client, job["id"], tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :]
    assert tokenizer.decode(new, skip_special_tokens=True) == answer["text"]

    sampled = _generate(
        client, job["id"], prompt=QUESTION, temperature=1.5, top_p=0.95, max_new_tokens=8
    )
    assert sampled["done"] and sampled["tokens"] >= 1


def _events(client: TestClient, job_id: int, body: dict[str, Any]) -> list[tuple[str, dict]]:
    events = []
    with client.stream("POST", f"/api/v1/jobs/{job_id}/generate/stream", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = "message"
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
                name = "message"
    return events


def test_the_stream_sends_the_answer_in_pieces(
    client: TestClient, predictor: Path, job: dict
) -> None:
    # Long enough to outlast a few of the worker's writes (one every 0.2 s).
    events = _events(
        client, job["id"], {"prompt": QUESTION, "max_new_tokens": 200, "temperature": 0}
    )
    names = [name for name, _ in events]
    assert names[0] == "start" and names[-1] == "done", events[-1]
    pieces = [data["text"] for name, data in events if name == "message"]
    assert len(pieces) >= 2, "the answer came in one piece: it was not streamed"
    done = events[-1][1]
    assert (
        "".join(pieces) == done["text"] and done["prediction_id"] == events[0][1]["prediction_id"]
    )
    assert done["tokens"] > 20

    greedy = _events(client, job["id"], {"prompt": QUESTION, **GREEDY})
    whole = _generate(client, job["id"], prompt=QUESTION, **GREEDY)["text"]
    assert greedy[-1][1]["text"] == whole

    refused = client.post(f"/api/v1/jobs/{job['id']}/generate/stream", json={"prompt": ""})
    assert refused.status_code == 422  # before any stream starts


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({}, "either"),
        ({"prompt": "Hi", "messages": [{"role": "user", "content": "Hi"}]}, "either"),
        ({"messages": [{"role": "robot", "content": "Hi"}]}, "'system', 'user' or 'assistant'"),
        ({"messages": [{"role": "user", "text": "Hi"}]}, "Field required"),
        ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "?"}]},
         "last message must be the user's"),
        ({"prompt": "Hi", "temperature": 2.5}, "less than or equal to 2"),
        ({"prompt": "Hi", "top_p": 0}, "greater than 0"),
        ({"prompt": "Hi", "max_new_tokens": 0}, "greater than or equal to 1"),
        ({"prompt": "Hi", "max_new_tokens": 5000}, "less than or equal to 1024"),
        ({"prompt": "Hi", "beams": 4}, "Extra inputs are not permitted"),
        ({"prompt": "half \ud800"}, "valid string"),  # pydantic's own check, not echoed
        ({"messages": [{"role": "user", "content": "half \ud800"}]}, "valid string"),
    ],
)  # fmt: skip
def test_bad_questions_say_what_to_send(
    client: TestClient, job: dict, body: dict[str, Any], says: str
) -> None:
    response = client.post(
        f"/api/v1/jobs/{job['id']}/generate",
        content=json.dumps(body),  # escaped as JSON escapes it: a lone surrogate too
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert says in json.dumps(response.json()["detail"]), response.json()


def test_only_a_finished_generation_job_generates(
    client: TestClient, job: dict, tmp_path: Path, tiny_model_id: str
) -> None:
    response = client.post(f"/api/v1/jobs/{job['id']}/predict", data={"text": "hello"})
    assert response.status_code == 422 and "/generate" in response.json()["detail"]

    texts = upload_csv(client, write_csv(tmp_path / "t.csv", labelled_texts(12)))
    body = {"dataset_id": texts["id"], "model": tiny_model_id, "strategy": "transfer_frozen"}
    classifier = client.post("/api/v1/jobs", json=body).json()
    client.post(f"/api/v1/jobs/{classifier['id']}/cancel")
    response = client.post(f"/api/v1/jobs/{classifier['id']}/generate", json={"prompt": "Hi"})
    assert response.status_code == 422 and "not generation" in response.json()["detail"]

    unfinished = client.post("/api/v1/jobs", json={**body, **_same_data(job)}).json()
    client.post(f"/api/v1/jobs/{unfinished['id']}/cancel")
    response = client.post(f"/api/v1/jobs/{unfinished['id']}/generate", json={"prompt": "Hi"})
    assert response.status_code == 409 and "no trained model" in response.json()["detail"]


def _same_data(job: dict) -> dict[str, Any]:
    return {"dataset_id": job["dataset_id"], "model": job["model"], "strategy": "finetune_full"}


def _finished_turn(client: TestClient, fragment: str) -> str:
    """The answer fragment polled as the page does, until it carries the finished answer."""
    found = re.search(r'hx-get="(/predictions/\d+/answer)"', fragment)
    while found:
        fragment = client.get(found.group(1)).text
        found = re.search(r'hx-get="(/predictions/\d+/answer)"', fragment)
    return fragment


def _hidden_turns(fragment: str) -> list[tuple[str, str]]:
    pairs = re.findall(
        r'name="role" value="(\w+)"><input type="hidden" name="content" value="([^"]*)"', fragment
    )
    return [(role, unescape(content)) for role, content in pairs]


def test_the_chat_page_keeps_the_conversation_and_streams(
    client: TestClient, predictor: Path, job: dict
) -> None:
    page = client.get(f"/jobs/{job['id']}").text
    assert "Try it: chat" in page and 'name="temperature"' in page and 'value="0.7"' in page
    assert "0 is greedy decoding" in page and 'value="128"' in page and 'value="0.9"' in page

    url = f"/jobs/{job['id']}/playground/chat"
    first = client.post(url, data={"prompt": QUESTION, **GREEDY})
    assert first.status_code == 200
    assert 'id="chat-prompt"' in first.text and 'hx-swap-oob="true"' in first.text  # cleared
    answer = _hidden_turns(_finished_turn(client, first.text))
    expected = _generate(client, job["id"], prompt=QUESTION, **GREEDY)["text"]
    assert _hidden_turns(first.text)[0] == ("user", QUESTION)
    assert answer == [("assistant", expected)]

    turns = [("user", QUESTION), *answer]
    second = client.post(
        url,
        data={
            "role": [r for r, _ in turns],
            "content": [c for _, c in turns],
            "prompt": "And on Saturday?",
            **GREEDY,
        },
    )
    assert second.status_code == 200
    chat = [{"role": r, "content": c} for r, c in turns]
    chat.append({"role": "user", "content": "And on Saturday?"})
    again = _generate(client, job["id"], messages=chat, **GREEDY)["text"]
    assert _hidden_turns(_finished_turn(client, second.text)) == [("assistant", again)]

    bad = client.post(url, data={"prompt": QUESTION, "temperature": "5"})
    assert bad.status_code == 422 and bad.headers["HX-Retarget"] == "#chat-error"
    assert "temperature" in bad.text and "less than or equal to 2" in bad.text
    empty = client.post(url, data={"prompt": "  "})
    assert empty.status_code == 422 and "last message must be the user" in empty.text


def _csv(client: TestClient, prediction: dict) -> list[dict[str, str]]:
    url = f"/api/v1/predictions/{prediction['id']}"
    done = wait_for(
        lambda: (p := client.get(url).json())["status"] != "queued" and p,
        timeout=120,
        what="the batch of prompts",
    )
    assert done["status"] == "succeeded", done
    return list(csv.DictReader(io.StringIO(client.get(url + "/download").text)))


def test_a_file_of_prompts_becomes_a_safe_csv(
    client: TestClient, predictor: Path, job: dict, tmp_path: Path
) -> None:
    table = tmp_path / "prompts.csv"
    table.write_text(f"id,prompt\n1,{QUESTION}\n2,\n3,=1+1 is a formula\n")
    url = f"/api/v1/jobs/{job['id']}/predict-batch"
    response = client.post(
        url,
        files={"file": ("prompts.csv", table.read_bytes())},
        data={"temperature": "0", "max_new_tokens": "12"},
    )
    assert response.status_code == 202, response.text
    rows = _csv(client, response.json())
    assert [r["line"] for r in rows] == ["2", "3", "4"]
    assert list(rows[0]) == ["line", "prompt", "response", "error"]
    expected = _generate(client, job["id"], prompt=QUESTION, **GREEDY)["text"]
    assert rows[0]["response"] == expected.replace("\r", "")
    assert rows[1]["error"] and not rows[1]["response"]
    assert rows[2]["prompt"] == "'=1+1 is a formula" and rows[2]["response"]

    chats = reminder_conversations(3, seed=5)  # ending with reference answers, left out
    jsonl = write_chat_jsonl(tmp_path / "chats.jsonl", chats)
    response = client.post(
        url, files={"file": ("chats.jsonl", jsonl.read_bytes())}, data={"max_new_tokens": "8"}
    )
    assert response.status_code == 202, response.text
    rows = _csv(client, response.json())
    assert [r["prompt"] for r in rows] == [c[0]["content"] for c in chats]
    assert all(r["response"] and not r["error"] for r in rows)

    bad = tmp_path / "bad.jsonl"
    good_line = json.dumps({"messages": [{"role": "user", "content": "Hi"}]})
    bad_line = json.dumps({"messages": [{"role": "robot", "content": "x"}]})
    bad.write_text(f"{good_line}\n{bad_line}\n")
    response = client.post(url, files={"file": ("bad.jsonl", bad.read_bytes())})
    assert response.status_code == 422 and response.json()["line"] == 2
    assert "role must be one of" in response.json()["detail"]
    none = tmp_path / "none.csv"
    none.write_text("body\nsomething\n")
    response = client.post(url, files={"file": ("none.csv", none.read_bytes())})
    assert response.status_code == 422 and "no prompt column" in response.json()["detail"]
    response = client.post(
        url, files={"file": ("prompts.csv", table.read_bytes())}, data={"temperature": "9"}
    )
    assert response.status_code == 422
