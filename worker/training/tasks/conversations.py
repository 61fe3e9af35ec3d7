"""Conversations for generation: read from a chat JSONL file or built from prompt and
response cells, checked, and summarised for the dataset report.

A conversation is a list of {"role", "content"} messages: an optional system message first,
then user and assistant turns taking turns, beginning with the user's and ending with the
assistant's, the answer the model learns (chat_tokens.py renders it and masks the rest).
Every problem names its lines, as tagged_text.py does. In a chat file a malformed row is an
error that refuses the upload: it is a mistake in the file, and skipping it quietly would
train on less than the person thinks. In a table an empty prompt or response is skipped with
a warning, as the other tasks skip a row without a label.

Pure Python: the web process imports this, so no torch and no `app.`.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from worker.training.tasks.tagged_formats import Issue, decode, lone_surrogate
from worker.training.tasks.tagged_text import Problem, group_issues

Conversation = list[dict[str, str]]  # {"role": system | user | assistant, "content": …}
ROLES = ("system", "user", "assistant")
MESSAGES_LIST = re.compile(r'"messages"\s*:\s*\[')
MAX_LINES = 20  # line numbers kept per problem: enough to find the pattern
PROGRESS_EVERY = 10_000  # rows between two progress reports
FORMAT_HELP = (
    'one JSON object per line, {"messages": [{"role": "user", "content": "..."}, '
    '{"role": "assistant", "content": "..."}]}'
)
# Maximum lengths people choose between, and what a suggestion is rounded up to.
TRUNCATION_LENGTHS = (128, 256, 512, 1024, 2048)
LENGTH_STEP = 32
MAX_SUGGESTED = 4096  # the largest maximum length a job accepts (hyperparameters.max_length)
HISTOGRAM_BINS = 20

# Told every PROGRESS_EVERY rows: rows read so far, and the share of the file read (0..1).
OnProgress = Callable[[int, float], None]


@dataclass(frozen=True)
class Chat:
    conversation: Conversation
    line: int  # 1-based line (table: the row's line) it was read from


@dataclass
class ChatFile:
    chats: list[Chat]
    errors: list[Problem]
    warnings: list[Problem]

    @property
    def conversations(self) -> list[Conversation]:
        return [chat.conversation for chat in self.chats]


def looks_chat(head: bytes) -> bool:
    """Whether an upload's first bytes are chat JSONL: a first record whose "messages" is a
    list (a table may well have a column of messages, each a text)."""
    text = head.decode("utf-8-sig", errors="replace").lstrip()
    return text.startswith("{") and bool(MESSAGES_LIST.search(text.split("\n", 1)[0]))


def conversation_problem(messages: Any) -> tuple[str, str] | None:
    """(code, what is wrong and what to do) for a `messages` value that is not a
    conversation the model can learn from, or None."""
    if not isinstance(messages, list):
        return "not_a_list", '"messages" must be a list of {"role", "content"} objects'
    if not messages:
        return "empty_conversation", '"messages" is empty; give a user and an assistant turn'
    for number, message in enumerate(messages, 1):
        if not isinstance(message, dict) or not {"role", "content"} <= message.keys():
            return "bad_message", f'message {number} must be an object with "role" and "content"'
        role, content = message["role"], message["content"]
        if role not in ROLES:
            return (
                "unknown_role",
                f"message {number} has role {role!r}; use system, user or assistant",
            )
        if not isinstance(content, str):
            kind = "null" if content is None else type(content).__name__
            return (
                "bad_content",
                f"message {number}'s content is {kind}, not text; write it as a string",
            )
        if not content.strip():
            return "empty_content", f"message {number} ({role}) is empty; write it or remove it"
    return _order_problem([m["role"] for m in messages])


def _order_problem(roles: list[str]) -> tuple[str, str] | None:
    if "assistant" not in roles:
        return "no_assistant", "no assistant turn; add the answer the model should learn to give"
    if "system" in roles[1:]:
        number = roles.index("system", 1) + 1
        return "wrong_order", f"message {number} is a system message; only the first may be one"
    first = 1 if roles[0] == "system" else 0
    turns = roles[first:]
    if turns[0] != "user":
        return "wrong_order", f"message {first + 1} is the assistant's; begin with the user's turn"
    for i in range(1, len(turns)):
        if turns[i] == turns[i - 1]:
            a, b = first + i, first + i + 1
            return "wrong_order", (
                f"messages {a} and {b} are both {turns[i]} turns; user and assistant take turns"
            )
    if turns[-1] != "assistant":
        return "wrong_order", "it ends on a user turn; end it with the assistant's answer"
    return None


def read_chat_jsonl(
    data: bytes, *, row_cap: int | None = None, on_progress: OnProgress | None = None
) -> ChatFile:
    """Read and check a chat file; a file with more than `row_cap` rows is refused at the
    first row past it."""
    text = decode(data)
    if isinstance(text, Issue):
        return ChatFile([], group_issues([text]), [])
    chats: list[Chat] = []
    issues: list[Issue] = []
    lines = [line.removesuffix("\r") for line in text.split("\n")]  # as tagged_formats.parse
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if row_cap is not None and len(chats) + len(issues) >= row_cap:
            message = (
                f"line {number}: the file has more than {row_cap:,} rows, the most one dataset "
                "may have on this server; upload a sample of it"
            )
            issues.append(Issue("too_many_rows", number, message))
            break
        record = _read_record(line)
        if isinstance(record, Issue):
            issues.append(Issue(record.code, number, f"line {number}: {record.message}"))
        else:
            messages = [{"role": m["role"], "content": m["content"]} for m in record]
            chats.append(Chat(messages, number))
        if on_progress and (len(chats) + len(issues)) % PROGRESS_EVERY == 0:
            on_progress(len(chats) + len(issues), number / len(lines))
    if not chats and not issues:
        issues.append(Issue("no_conversations", 0, f"the file is empty; write {FORMAT_HELP}"))
    return ChatFile(chats, group_issues(issues), _duplicates(chats, "conversations"))


def _read_record(line: str) -> Issue | list[dict[str, Any]]:
    """A line's messages, or its problem (line 0: the caller numbers it)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return Issue(
            "bad_json", 0, f"not valid JSON ({exc.msg}, column {exc.colno}); write {FORMAT_HELP}"
        )
    except (ValueError, RecursionError):  # nesting too deep, numbers too long
        return Issue("bad_json", 0, "unreadable JSON")
    if lone_surrogate(line, record):
        message = (
            "a \\u escape of half a character (a lone surrogate such as \\ud800), which is "
            "not text; write the character itself"
        )
        return Issue("bad_encoding", 0, message)
    if not isinstance(record, dict) or "messages" not in record:
        return Issue("missing_messages", 0, f'no "messages"; write {FORMAT_HELP}')
    problem = conversation_problem(record["messages"])
    if problem is not None:
        return Issue(problem[0], 0, problem[1])
    return record["messages"]


def from_cells(rows: Iterable[tuple[int, Any, Any]], *, prompt: str, response: str) -> ChatFile:
    """Conversations of one user and one assistant turn from (line, prompt cell, response
    cell); a row with either empty is skipped and named."""
    chats: list[Chat] = []
    no_prompt: list[int] = []
    no_response: list[int] = []
    for line, prompt_cell, response_cell in rows:
        question, answer = _cell_text(prompt_cell), _cell_text(response_cell)
        if not answer.strip():
            no_response.append(line)
        elif not question.strip():
            no_prompt.append(line)
        else:
            turns = [
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            ]
            chats.append(Chat(turns, line))
    warnings = []
    for code, lines, what, cell in (
        ("missing_responses", no_response, "without a response", response),
        ("empty_prompts", no_prompt, "with an empty prompt", prompt),
    ):
        if lines:
            message = (
                f"{_rows(len(lines))} {what} will be skipped ({_where(lines)}); fill in "
                f"'{cell}' to use them"
            )
            warnings.append(Problem(code, message, lines[:MAX_LINES]))
    errors = []
    if not chats:
        message = (
            f"no row has both a prompt in '{prompt}' and a response in '{response}'; check "
            "that these are the right columns (prompt_column, response_column)"
        )
        errors.append(Problem("no_usable_rows", message, []))
    return ChatFile(chats, errors, warnings + _duplicates(chats, "prompt and response pairs"))


def with_system(conversation: Conversation, system_prompt: str | None) -> Conversation:
    """The dataset-wide system prompt first, unless the conversation brings its own."""
    if not system_prompt or not system_prompt.strip():
        return conversation
    if conversation and conversation[0]["role"] == "system":
        return conversation
    return [{"role": "system", "content": system_prompt}, *conversation]


def _duplicates(chats: list[Chat], what: str) -> list[Problem]:
    seen: dict[tuple[tuple[str, str], ...], int] = {}
    repeats = []
    for chat in chats:
        key = tuple((m["role"], m["content"]) for m in chat.conversation)
        if seen.setdefault(key, chat.line) != chat.line:
            repeats.append(chat.line)
    if not repeats:
        return []
    message = (
        f"{_rows(len(repeats))} {'repeats' if len(repeats) == 1 else 'repeat'} earlier {what} "
        f"exactly ({_where(repeats)}); remove "
        "copies: they are learned twice and can land in training and evaluation alike"
    )
    return [Problem("duplicates", message, repeats[:MAX_LINES])]


def summarise(chats: list[Chat]) -> dict[str, Any]:
    """The report's words on the conversations: how many, how many turns, how long."""
    conversations = [chat.conversation for chat in chats]
    answers = [sum(m["role"] == "assistant" for m in c) for c in conversations]
    last_prompts = [next(m for m in reversed(c) if m["role"] == "user") for c in conversations]
    return {
        "conversations": len(conversations),
        "assistant_turns": sum(answers),
        "multi_turn": sum(n > 1 for n in answers),
        "with_system": sum(c[0]["role"] == "system" for c in conversations),
        "prompt_chars": _spread([len(m["content"]) for m in last_prompts]),
        "response_chars": _spread([len(c[-1]["content"]) for c in conversations]),
    }


def token_length_report(lengths: Sequence[int]) -> dict[str, Any]:
    """What a maximum length would cut, from each conversation's length in tokens: a
    histogram from the shortest to the longest, the median, the 95th percentile and the
    longest, the rows cut at each common maximum, and a suggestion (the 95th percentile
    rounded up to LENGTH_STEP): a few long rows lose their tails rather than every batch
    paying for the longest."""
    if not lengths:
        return {}
    ordered = sorted(int(n) for n in lengths)
    shortest, longest = ordered[0], ordered[-1]
    width = max(1, math.ceil((longest - shortest + 1) / HISTOGRAM_BINS))
    counts = [0] * HISTOGRAM_BINS
    for n in ordered:
        counts[min((n - shortest) // width, HISTOGRAM_BINS - 1)] += 1
    edges = [shortest + width * i for i in range(HISTOGRAM_BINS + 1)]
    p95 = _percentile(ordered, 95)
    suggested = min(MAX_SUGGESTED, max(LENGTH_STEP, math.ceil(p95 / LENGTH_STEP) * LENGTH_STEP))
    return {
        "rows": len(ordered),
        "histogram": {"edges": edges, "counts": counts},
        "p50": _percentile(ordered, 50),
        "p95": p95,
        "max": longest,
        "truncated": {str(limit): sum(n > limit for n in ordered) for limit in TRUNCATION_LENGTHS},
        "suggested_max_length": suggested,
        "suggested_truncated": sum(n > suggested for n in ordered),
    }


def _percentile(ordered: list[int], q: int) -> int:
    """Nearest rank: a length some row really has."""
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _spread(values: list[int]) -> dict[str, float]:
    if not values:
        return {"min": 0.0, "median": 0.0, "mean": 0.0, "max": 0.0}
    return {
        "min": float(min(values)),
        "median": float(statistics.median(values)),
        "mean": round(sum(values) / len(values), 1),
        "max": float(max(values)),
    }


def _cell_text(value: Any) -> str:
    return "" if value is None else str(value)


def _rows(count: int) -> str:
    return "1 row" if count == 1 else f"{count} rows"


def _where(lines: list[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:5])
    return (
        f"line {shown}"
        if len(lines) == 1
        else f"lines {shown}" + (", ..." if len(lines) > 5 else "")
    )
