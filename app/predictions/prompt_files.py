"""The prompts of a batch file for a generation job, read and checked by the web before
anything is queued, so a bad file is a 422 naming its line rather than a failed batch.

Two kinds of file:
- chat JSONL: one {"messages": [{"role", "content"}, …]} object per line, as the training
  files are; a last assistant turn (a reference answer, as in a test file) is left out, so
  the model writes its own;
- a table (CSV, TSV, JSONL, Parquet) with a prompt column: the dataset's prompt column, or
  one named like a prompt (PROMPT_COLUMNS). An empty prompt is kept as a row whose CSV line
  says so, so the output lines up with the input.
Each prompt becomes {"line", "prompt", "messages"} (or {"line", "prompt", "error"}), with the
dataset's system prompt first unless the conversation has its own, as in training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.datasets.parsing import ParseError, detect_format, read_table
from app.datasets.validation import cell_text
from worker.training.chat_request import ChatRefused, checked_conversation
from worker.training.tasks.conversations import FORMAT_HELP, looks_chat, with_system
from worker.training.tasks.tagged_formats import Issue, decode, lone_surrogate

# Column names taken as the prompts, after the dataset's own prompt column.
PROMPT_COLUMNS = ("prompt", "instruction", "question", "input", "text")
EMPTY_PROMPT = "the prompt is empty: nothing to answer"


def read_prompts(
    path: Path,
    filename: str,
    *,
    prompt_column: str | None = None,
    system_prompt: str | None = None,
) -> list[dict[str, Any]]:
    with path.open("rb") as f:
        head = f.read(4096)
    if looks_chat(head):
        rows = _chat_rows(path.read_bytes())
    else:
        rows = _table_rows(path, filename, head, prompt_column)
    for row in rows:
        if "messages" in row:
            row["messages"] = with_system(row["messages"], system_prompt)
    return rows


def _last_user(conversation: list[dict[str, str]]) -> str:
    return next(m["content"] for m in reversed(conversation) if m["role"] == "user")


def _chat_rows(data: bytes) -> list[dict[str, Any]]:
    text = decode(data)
    if isinstance(text, Issue):
        raise ParseError(text.message, line=text.line or None)
    rows = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            raise ParseError(f"not valid JSON; write {FORMAT_HELP}", line=number) from None
        if lone_surrogate(line, record):
            raise ParseError("a \\u escape of half a character; write the character", line=number)
        if not isinstance(record, dict) or "messages" not in record:
            raise ParseError(f'no "messages"; write {FORMAT_HELP}', line=number)
        messages = record["messages"]
        last = messages[-1] if isinstance(messages, list) and messages else None
        if isinstance(last, dict) and last.get("role") == "assistant":
            messages = messages[:-1]  # a reference answer: the model writes its own
        try:
            conversation = checked_conversation(messages)
        except ChatRefused as exc:
            raise ParseError(str(exc), line=number) from None
        rows.append({"line": number, "prompt": _last_user(conversation), "messages": conversation})
    return rows


def _table_rows(
    path: Path, filename: str, head: bytes, prompt_column: str | None
) -> list[dict[str, Any]]:
    table = read_table(path, detect_format(filename, head))
    wanted = [c for c in (prompt_column, *PROMPT_COLUMNS) if c]
    by_name = {c.strip().lower(): c for c in table.columns}
    column = next((by_name[w.lower()] for w in wanted if w.lower() in by_name), None)
    if column is None:
        names = ", ".join(f"'{c}'" for c in dict.fromkeys(wanted))
        raise ParseError(
            f"the file has no prompt column (one of {names}); it has: "
            f"{', '.join(table.columns)}. Or send chat JSONL, {FORMAT_HELP}",
            column=prompt_column or "prompt",
        )
    rows: list[dict[str, Any]] = []
    for line, cells in zip(table.lines, table.rows, strict=True):
        prompt = cell_text(cells.get(column))
        if not prompt.strip():
            rows.append({"line": line, "prompt": prompt, "error": EMPTY_PROMPT})
            continue
        try:
            conversation = checked_conversation([{"role": "user", "content": prompt}])
        except ChatRefused as exc:
            raise ParseError(str(exc), line=line, column=column) from None
        rows.append({"line": line, "prompt": prompt, "messages": conversation})
    return rows
