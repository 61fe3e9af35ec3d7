"""Which columns of a generation table hold the prompts and which the responses.

As with columns.py for the other tasks, names decide: the common dataset layouts name them
plainly (prompt/response, Alpaca's instruction/output, question/answer), and a person can
always name them (prompt_column, response_column); every error here says how.
"""

from __future__ import annotations

from app.datasets.columns import LABEL_NAMES, find_column, norm_name
from app.datasets.parsing import ParseError, Table

# Column pairs that are plainly a prompt and its response, in the order they are tried.
PROMPT_PAIRS = (
    ("prompt", "response"), ("instruction", "output"), ("question", "answer"),
    ("input", "output"), ("prompt", "completion"),
)  # fmt: skip


def looks_like_prompts(columns: list[str]) -> bool:
    """A prompt/response pair and no column named like a label: a table with a label column
    too is left to the other tasks (a question/answer file may be labelled for classifying)."""
    plain = {norm_name(c) for c in columns}
    return not plain & set(LABEL_NAMES) and _pair(columns) is not None


def prompt_columns(table: Table, *, prompt: str | None, response: str | None) -> tuple[str, str]:
    """The prompt and response columns: as named (case and spaces aside), else a pair of
    plain names, else the other half of a pair whose one half was named."""
    found_prompt = find_column(table, prompt, "prompt_column")
    found_response = find_column(table, response, "response_column")
    if found_prompt is None or found_response is None:
        for first, second in PROMPT_PAIRS:
            pair = _pair(table.columns, only=(first, second))
            if pair and found_prompt in (None, pair[0]) and found_response in (None, pair[1]):
                found_prompt, found_response = pair
                break
        else:
            free = [c for c in table.columns if c not in (found_prompt, found_response)]
            found_prompt = found_prompt or _named(free, [p for p, _ in PROMPT_PAIRS])
            found_response = found_response or _named(free, [r for _, r in PROMPT_PAIRS])
    if found_prompt is None or found_response is None:
        raise ParseError(
            "could not tell which columns hold the prompts and the responses (the file has: "
            f"{', '.join(table.columns)}); name them with prompt_column and response_column",
            column="prompt_column" if found_prompt is None else "response_column",
        )
    if found_prompt == found_response:
        raise ParseError(
            f"'{found_prompt}' was chosen as both the prompt and the response column; "
            "choose two different columns",
            column=found_prompt,
        )
    return found_prompt, found_response


def _pair(columns: list[str], only: tuple[str, str] | None = None) -> tuple[str, str] | None:
    by_norm = {norm_name(c): c for c in columns}
    for first, second in [only] if only else PROMPT_PAIRS:
        if first in by_norm and second in by_norm:
            return by_norm[first], by_norm[second]
    return None


def _named(columns: list[str], names: list[str]) -> str | None:
    by_norm = {norm_name(c): c for c in columns}
    return next((by_norm[n] for n in names if n in by_norm), None)
