"""The three upload formats of entity tagging, read into one raw shape.

Nothing here judges the tags: each reader returns the sentences with their tags as written
and the problems met on the way (a line that is not JSON, a span past the end of its text),
each naming its line; tagged_text.py turns the tags into IOB2 and checks the whole file.
A record with a problem is left out rather than half read, so what is reported as read is
what training would see once the problems are fixed.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass, field
from typing import Any

WORD = re.compile(r"\w+|[^\w\s]")  # the words a spans record's text is cut into
FIELD_SEP = re.compile(r"[ \t]+")  # CoNLL columns: spaces or tabs, nothing else
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # \ud800 to \udfff: half a character
FORMAT_HELP = {
    "jsonl_tokens": '"tokens" and "tags", two lists of strings of the same length',
    "jsonl_spans": '"text", a string, and "spans", a list of {"start", "end", "label"}',
}


@dataclass(frozen=True)
class Issue:
    code: str
    line: int  # 1-based; 0 for the file as a whole
    message: str  # begins with "line N: " when line > 0


@dataclass
class RawSentence:
    tokens: list[str]
    tags: list[str]  # as written in the file
    tag_lines: list[int]  # each tag's line, for messages about one tag
    line: int
    text: str | None = None
    offsets: list[tuple[int, int]] | None = None


@dataclass
class Parsed:
    format: str  # "conll" | "jsonl_tokens" | "jsonl_spans"
    sentences: list[RawSentence] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)


def decode(data: bytes) -> str | Issue:
    """UTF-8, with or without a byte-order mark; anything else is refused by line."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return Issue(
                "bad_encoding", 0, "the file is UTF-16; save it as UTF-8 and upload it again"
            )
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start]
        return Issue(
            "bad_encoding",
            line,
            f"line {line}: byte 0x{byte:02X} is not UTF-8 (the file may be Latin-1 or "
            "Windows-1252); save the file as UTF-8 and upload it again",
        )
    if "\x00" in text:  # valid UTF-8, but no text file holds NUL: UTF-16 without a mark
        line = text.count("\n", 0, text.index("\x00")) + 1
        message = f"line {line}: a NUL byte; the file may be UTF-16 or binary: save it as UTF-8"
        return Issue("bad_encoding", line, message)
    return text


def parse(text: str) -> Parsed:
    """JSONL when the first non-blank character is `{`, CoNLL otherwise."""
    # Split on newlines only: str.splitlines also breaks at U+2028 and friends, which JSON
    # strings may hold and which no editor counts as a line.
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    return read_jsonl(lines) if text.lstrip().startswith("{") else read_conll(lines)


def read_conll(lines: list[str]) -> Parsed:
    parsed = Parsed("conll")
    tokens: list[str] = []
    tags: list[str] = []
    tag_lines: list[int] = []

    def close() -> None:
        if tokens:
            parsed.sentences.append(RawSentence(tokens[:], tags[:], tag_lines[:], tag_lines[0]))
        for column in (tokens, tags, tag_lines):
            column.clear()

    for number, line in enumerate(lines, 1):
        fields = [f for f in FIELD_SEP.split(line) if f]
        if not fields or fields[0].startswith("-DOCSTART-"):
            close()
        elif len(fields) == 1:
            parsed.issues.append(
                Issue(
                    "missing_tag",
                    number,
                    f"line {number}: {fields[0][:40]!r} has no tag; write the token, a space "
                    "or tab, then its tag (O outside entities)",
                )
            )
        else:
            # The tag is the last column: CoNLL-2003 puts POS and chunk tags in between.
            tokens.append(fields[0])
            tags.append(fields[-1])
            tag_lines.append(number)
    close()
    return parsed


def read_jsonl(lines: list[str]) -> Parsed:
    parsed = Parsed("jsonl_tokens")
    first: int | None = None  # the line of the record that set the format
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            halved = lone_surrogate(line, record)
        except json.JSONDecodeError as exc:
            parsed.issues.append(
                Issue(
                    "bad_json",
                    number,
                    f"line {number}: not valid JSON ({exc.msg}, column {exc.colno}); "
                    "write one JSON object per line",
                )
            )
            continue
        except (ValueError, RecursionError):  # nesting too deep, numbers too long
            parsed.issues.append(Issue("bad_json", number, f"line {number}: unreadable JSON"))
            continue
        if halved:
            message = (
                f"line {number}: a \\u escape of half a character (a lone surrogate such as "
                "\\ud800), which is not text; write the character itself"
            )
            parsed.issues.append(Issue("bad_encoding", number, message))
            continue
        if not isinstance(record, dict):
            message = f"line {number}: a JSON {type(record).__name__}, not an object"
            parsed.issues.append(Issue("wrong_type", number, message))
            continue
        if "tokens" in record or "tags" in record:
            kind = "jsonl_tokens"
        elif "text" in record or "spans" in record:
            kind = "jsonl_spans"
        else:
            message = (
                f"line {number}: the record has neither tokens/tags nor text/spans; give "
                f"each record {FORMAT_HELP['jsonl_tokens']}, or {FORMAT_HELP['jsonl_spans']}"
            )
            parsed.issues.append(Issue("missing_key", number, message))
            continue
        if first is None:
            first, parsed.format = number, kind
        elif kind != parsed.format:
            message = (
                f"line {number}: this record is in another format than line {first}; "
                f"use one for the whole file: {FORMAT_HELP[parsed.format]}"
            )
            parsed.issues.append(Issue("mixed_formats", number, message))
            continue
        reader = read_tokens_record if kind == "jsonl_tokens" else read_spans_record
        sentence, issues = reader(record, number)
        parsed.issues.extend(issues)
        if sentence is not None:
            parsed.sentences.append(sentence)
    return parsed


def _string_list(record: dict[str, Any], key: str, number: int) -> list[str] | Issue:
    if key not in record:
        message = f'line {number}: no "{key}"; give each record {FORMAT_HELP["jsonl_tokens"]}'
        return Issue("missing_key", number, message)
    value = record[key]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return Issue("wrong_type", number, f'line {number}: "{key}" must be a list of strings')
    return value


def read_tokens_record(
    record: dict[str, Any], number: int
) -> tuple[RawSentence | None, list[Issue]]:
    tokens = _string_list(record, "tokens", number)
    tags = _string_list(record, "tags", number)
    issues = [value for value in (tokens, tags) if isinstance(value, Issue)]
    if isinstance(tokens, Issue) or isinstance(tags, Issue):
        return None, issues
    if len(tokens) != len(tags):
        message = (
            f"line {number}: tokens has {len(tokens)} items but tags has {len(tags)}; "
            "give every token one tag"
        )
        return None, [Issue("length_mismatch", number, message)]
    if not tokens:
        return None, [_empty(number)]
    return RawSentence(tokens, tags, [number] * len(tags), number), []


def read_spans_record(
    record: dict[str, Any], number: int
) -> tuple[RawSentence | None, list[Issue]]:
    text, spans = record.get("text"), record.get("spans")
    for key, value, kind in (("text", text, str), ("spans", spans, list)):
        if key not in record:
            message = f'line {number}: no "{key}"; give each record {FORMAT_HELP["jsonl_spans"]}'
            return None, [Issue("missing_key", number, message)]
        if not isinstance(value, kind):
            message = f'line {number}: "{key}" must be a {"string" if kind is str else "list"}'
            return None, [Issue("wrong_type", number, message)]
    assert isinstance(text, str) and isinstance(spans, list)
    issues: list[Issue] = []
    found: list[tuple[int, int, str, int]] = []  # start, end, label, its place in the list
    for place, span in enumerate(spans, 1):
        fields: dict[str, Any] = span if isinstance(span, dict) else {}
        start: Any = fields.get("start")
        end: Any = fields.get("end")
        label: Any = fields.get("label")
        if not (_is_int(start) and _is_int(end) and isinstance(label, str) and label.strip()):
            message = (
                f'line {number}: span {place} must be {{"start": int, "end": int, '
                '"label": non-empty string}'
            )
            issues.append(Issue("wrong_type", number, message))
        elif not 0 <= start < end <= len(text):
            message = (
                f"line {number}: span {place} ({start}, {end}) does not fit the text's "
                f"{len(text)} characters; start counts from 0, end is exclusive and after start"
            )
            issues.append(Issue("span_out_of_range", number, message))
        else:
            found.append((start, end, label, place))
    found.sort()
    for (_, end, _, place), (start, _, _, later) in zip(found, found[1:], strict=False):
        if start < end:
            message = (
                f"line {number}: spans {place} and {later} overlap; each character may "
                "belong to one entity only"
            )
            issues.append(Issue("overlapping_spans", number, message))
    if issues:
        return None, issues
    words = list(WORD.finditer(text))
    if not words:
        return None, [_empty(number)]
    offsets = [(word.start(), word.end()) for word in words]
    return RawSentence(
        [word.group() for word in words],
        _word_tags(offsets, found),
        [number] * len(words),
        number,
        text=text,
        offsets=offsets,
    ), []


def _word_tags(offsets: list[tuple[int, int]], spans: list[tuple[int, int, str, int]]) -> list[str]:
    """IOB2 tags of words: a word overlapping a span, even in part, belongs to it."""
    tags: list[str] = []
    j, previous = 0, -1  # the next span that can still cover a word; the last word's span
    for start, end in offsets:
        while j < len(spans) and spans[j][1] <= start:
            j += 1
        if j < len(spans) and spans[j][0] < end:
            tags.append(("I-" if previous == j else "B-") + spans[j][2])
            previous = j
        else:
            tags.append("O")
            previous = -1
    return tags


def lone_surrogate(line: str, record: Any) -> bool:
    """Whether the line's escapes decoded into half a character (\\ud800 without its pair),
    which no UTF-8 answer, page or tokenizer can carry."""
    if not SURROGATE_ESCAPE.search(line):
        return False
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _empty(number: int) -> Issue:
    return Issue("empty_sentence", number, f"line {number}: an empty sentence, skipped")
