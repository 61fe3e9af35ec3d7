"""Generation datasets: conversations from a chat JSONL file or a table's prompt and response
columns, checked, reported with their token lengths, and read back for training.

upload (chat JSONL whose rows have "messages"; or a table with generation named, or with a
prompt/response column pair such as instruction/output) → stored like any text upload →
`examine_generation` on the ingest worker: every part read (tasks/conversations.py names
each problem's lines), and every conversation's length in tokens as the packaged SmolLM2's
chat template renders it → the dataset's fields. The row stores the prompt column in
text_column and the response column in label_column; a chat file has "messages" and "".
Training reads the same files again (`training_conversations`), so what was checked is what
trains. Token counting needs the tokenizer (torch, transformers), which the web process never
loads: only the worker counts, and a column change is checked in the request, then counted
again by a worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.config import Settings
from app.datasets.folders import part_paths
from app.datasets.models import Dataset, DatasetStatus
from app.datasets.parsing import DatasetFormat, ParseError, read_table
from app.datasets.prompt_columns import looks_like_prompts, prompt_columns
from app.datasets.validation import DatasetInvalid, Issue
from app.queue import enqueue_check
from worker.training.tasks.conversations import (
    Chat,
    ChatFile,
    Conversation,
    from_cells,
    looks_chat,
    read_chat_jsonl,
    summarise,
    token_length_report,
    with_system,
)

log = logging.getLogger("tuneboard.datasets")
NAME = "generation"
CHAT_COLUMN = "messages"  # a chat file's text_column; its label_column is ""
PREVIEW_CONVERSATIONS = 20
PREVIEW_CHARS = 1000  # of each message shown on the dataset page
FEW_CONVERSATIONS = 50
TOKENIZER = "SmolLM2-135M-Instruct"  # whose chat template and vocabulary the report counts in
TOKENIZER_CACHE = "models/smollm2-135m-instruct-tokenizer"  # under the data folder

Progress = Callable[[str, int, float], None]  # part, rows read, share of the part read


def is_chat_upload(head: bytes, task: str | None) -> bool:
    """Whether an upload is a chat file, from its first bytes; refused under another task."""
    if not looks_chat(head):
        return False
    if task not in (None, NAME):
        raise ParseError(
            f'the file holds conversations ("messages"), which only the {NAME} task reads; '
            f"choose {NAME} or leave the task out",
            column="task",
        )
    return True


def asked_task(task: str | None, prompt: str | None, response: str | None) -> str | None:
    """The task an upload names: naming a prompt or response column names generation."""
    if not (prompt or response):
        return task
    if task not in (None, NAME):
        raise ParseError(
            f"prompt_column and response_column are for the {NAME} task, not {task}; use "
            "text_column and label_column",
            column="task",
        )
    return NAME


def chat_form(dataset: Dataset) -> bool:
    """A checked generation dataset read from a chat file (a table always has a response
    column)."""
    return dataset.task == NAME and not dataset.label_column


def is_generation(task: str, columns_asked: bool, train: Path) -> bool:
    """Whether a text upload being checked is generation: named (chat files are named at
    upload), or, with no task and no column named, a table of prompts and responses."""
    if task or columns_asked:
        return task == NAME
    if looks_chat(_head(train)):
        return True
    return looks_like_prompts(read_table(train, _format(train), max_rows=1).columns)


def examine_generation(
    files: dict[str, Path],
    *,
    settings: Settings,
    prompt_column: str | None = None,
    response_column: str | None = None,
    system_prompt: str | None = None,
    row_cap: int | None = None,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Read and check every part, and count tokens: the dataset's fields, or ParseError or
    DatasetInvalid naming each problem's lines."""
    chat = looks_chat(_head(files["train"]))
    parts, columns, prompt, response = _read(
        files,
        chat=chat,
        prompt=prompt_column,
        response=response_column,
        row_cap=row_cap,
        on_progress=on_progress,
    )
    report = _report(parts, chat=chat)
    system = (system_prompt or "").strip() or None
    everything = [with_system(c, system) for f in parts.values() for c in f.conversations]
    report["token_lengths"] = token_lengths(everything, settings)
    train = parts["train"].chats
    return {
        "columns": columns,
        "text_column": prompt,
        "text_pair_column": None,
        "label_column": response,
        "task": NAME,
        "label_separator": None,
        "label_columns": None,
        "system_prompt": system,
        "num_rows": len(train),
        "label_names": [],
        "report": report,
        "preview": [_preview(c) for c in train[:PREVIEW_CONVERSATIONS]],
    }


def token_lengths(conversations: list[Conversation], settings: Settings) -> dict[str, Any]:
    """The report's token lengths under the packaged SmolLM2's tokenizer (loaded once per
    worker process, from a copy saved in the data folder after the first time); without
    it, the reason, and the report goes on without them."""
    try:
        from worker.training.chat_tokens import conversation_lengths, prepared
        from worker.training.gguf_import import packaged_tokenizer

        tokenizer = prepared(packaged_tokenizer(str(settings.data_dir / TOKENIZER_CACHE)))
    except (ImportError, OSError, ValueError) as exc:  # the package or its file is missing
        log.warning("no tokenizer to count tokens with: %s", exc)
        return {"unavailable": f"the {TOKENIZER} tokenizer could not be loaded here"}
    lengths = conversation_lengths(tokenizer, conversations)
    return {**token_length_report(lengths.tolist()), "tokenizer": TOKENIZER}


def change_generation(
    session: Session,
    dataset: Dataset,
    *,
    settings: Settings,
    prompt: str,
    response: str,
    system_prompt: str | None,
) -> Dataset:
    """Another prompt/response choice or system prompt (None: keep it, "": none). Checked
    here, so a wrong choice is refused with the previous one kept; then the dataset is
    checked again by a worker, which counts the tokens anew."""
    chat = chat_form(dataset)
    if chat and (prompt, response) != (dataset.text_column, dataset.label_column):
        raise ParseError(
            "a chat file has no columns to choose: each row's messages are its conversation; "
            "only the system prompt can change"
        )
    files = part_paths(settings, dataset.id, dataset.files)
    parts, _, prompt, response = _read(files, chat=chat, prompt=prompt, response=response)
    _report(parts, chat=chat)  # raises DatasetInvalid: nothing below happens
    system = dataset.system_prompt if system_prompt is None else system_prompt.strip() or None
    choice = (NAME, prompt, response, system)
    if choice == (dataset.task, dataset.text_column, dataset.label_column, dataset.system_prompt):
        return dataset
    dataset.task, dataset.text_column, dataset.label_column, dataset.system_prompt = choice
    dataset.text_pair_column, dataset.label_separator, dataset.label_columns = None, None, None
    dataset.label_names = []
    # Checked again from the start: a fresh attempt count, so changes never use them up.
    dataset.status, dataset.check_attempts = DatasetStatus.checking, 0
    dataset.progress, dataset.rows_read, dataset.error = 0.0, 0, None
    session.commit()  # the worker must see the row before the message arrives
    enqueue_check(dataset.id)
    return dataset


def training_conversations(dataset: Dataset, settings: Settings) -> dict[str, list[Conversation]]:
    """Every part's conversations as training reads them, the system prompt applied."""
    files = part_paths(settings, dataset.id, dataset.files)
    parts, *_ = _read(
        files, chat=chat_form(dataset), prompt=dataset.text_column, response=dataset.label_column
    )
    return {
        part: [with_system(c, dataset.system_prompt) for c in chats.conversations]
        for part, chats in parts.items()
    }


def _read(
    files: dict[str, Path],
    *,
    chat: bool,
    prompt: str | None,
    response: str | None,
    row_cap: int | None = None,
    on_progress: Progress | None = None,
) -> tuple[dict[str, ChatFile], list[str], str, str]:
    """Each part's conversations, the train file's columns, and the prompt and response
    columns ("messages" and "" for a chat file)."""
    told = {part: partial(on_progress, part) if on_progress else None for part in files}
    if chat:
        parts = {
            part: read_chat_jsonl(path.read_bytes(), row_cap=row_cap, on_progress=told[part])
            for part, path in files.items()
        }
        return parts, [CHAT_COLUMN], CHAT_COLUMN, ""
    tables = {
        part: read_table(path, _format(path), row_cap=row_cap, on_progress=told[part])
        for part, path in files.items()
    }
    prompt, response = prompt_columns(tables["train"], prompt=prompt, response=response)
    parts = {}
    for part, table in tables.items():
        for column in (prompt, response):
            if column not in table.columns:
                raise ParseError(
                    f"the {part} file has no column '{column}' (it has: "
                    f"{', '.join(table.columns)}); give every file the training file's columns",
                    column=column,
                )
        rows = (
            (line, row.get(prompt), row.get(response))
            for line, row in zip(table.lines, table.rows, strict=True)
        )
        parts[part] = from_cells(rows, prompt=prompt, response=response)
    return parts, tables["train"].columns, prompt, response


def _report(parts: dict[str, ChatFile], *, chat: bool) -> dict[str, Any]:
    """The report without token lengths; DatasetInvalid when any part has errors."""
    errors: list[Issue] = []
    warnings: list[Issue] = []
    for part, read in parts.items():
        where = "" if part == "train" else f"{part} file: "
        errors += [Issue(p.code, where + p.message, p.lines) for p in read.errors]
        warnings += [Issue(p.code, where + p.message, p.lines) for p in read.warnings]
    train = parts["train"].chats
    if train and len(train) < FEW_CONVERSATIONS:
        message = (
            f"only {len(train)} conversations; a language model needs a few hundred to pick "
            "up a style or a format reliably, and its scores on so few will be noisy"
        )
        warnings.append(Issue("few_examples", message))
    report = {
        "errors": [asdict(e) for e in errors],
        "warnings": [asdict(w) for w in warnings],
        "num_rows": len(train),
        "class_counts": {},
        "text_length": {},
        "labels": {"task": NAME, "names": [], "format": "chat" if chat else "table"}
        | summarise(train),
        "parts": {part: len(read.chats) for part, read in parts.items()},
    }
    if errors:
        raise DatasetInvalid(errors, report)
    return report


def _preview(chat: Chat) -> dict[str, Any]:
    clipped = [{"role": m["role"], "content": _clip(m["content"])} for m in chat.conversation]
    return {"line": chat.line, "messages": clipped}


def _clip(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"


def _head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(4096)


def _format(path: Path) -> DatasetFormat:
    return DatasetFormat(path.suffix.removeprefix("."))
