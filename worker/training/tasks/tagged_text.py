"""Entity-tagging uploads: three formats read into IOB2 sentences, with a report.

An upload is CoNLL (a token and its tag per line, blank lines between sentences), JSONL of
tokens and tags, or JSONL of texts and character spans (tagged_formats.py reads each).
Whatever scheme the tags were written in (IOB2, IOB1, BIOES or plain types) comes out as
IOB2, the one the training and scoring code reads. Every problem names its lines so a
person can fix the file; errors block training, warnings only inform.

Pure Python: the web process imports this to check uploads, so no torch and no `app.`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from worker.training.tasks.tagged_formats import Issue, RawSentence, decode, parse

MAX_WORDS = 512  # past this a sentence does not fit the models' input in one piece
MAX_LINES = 20  # line numbers kept per problem: enough to find the pattern
WARNING_CODES = {"ill_formed_sequence", "empty_sentence", "long_sentence", "duplicates"}
PREFIX = re.compile(r"([BIESLU])-(.*)", re.IGNORECASE)  # IOB and BIOES/BILOU prefixes
STARTS = {"B", "S", "U"}  # prefixes that begin an entity; I, E and L continue one


@dataclass(frozen=True)
class TaggedSentence:
    tokens: list[str]
    tags: list[str]  # IOB2
    line: int  # 1-based line where the sentence starts in the file
    text: str | None = None  # the original text (spans format), else None
    offsets: list[tuple[int, int]] | None = None  # each token's (start, end) in text


@dataclass
class Problem:
    code: str
    message: str  # what is wrong and what to do
    lines: list[int]


@dataclass
class TaggedFile:
    format: str  # "conll" | "jsonl_tokens" | "jsonl_spans"
    scheme: str  # "iob2" | "iob1" | "plain": how the file's tags were written
    sentences: list[TaggedSentence]
    errors: list[Problem]
    warnings: list[Problem]

    def entity_types(self) -> list[str]:
        return sorted({tag[2:] for s in self.sentences for tag in s.tags if tag != "O"})

    def report(self) -> dict[str, Any]:
        lengths = [len(s.tokens) for s in self.sentences]
        counts = Counter(kind for s in self.sentences for kind, _, _ in entities(s.tags))
        return {
            "format": self.format,
            "scheme": self.scheme,
            "sentences": len(self.sentences),
            "tokens": sum(lengths),
            "entity_types": self.entity_types(),
            "entities": {kind: counts[kind] for kind in sorted(counts)},
            "length_histogram": _histogram(lengths),
            "errors": [asdict(p) for p in self.errors],
            "warnings": [asdict(p) for p in self.warnings],
        }


def read_tagged(data: bytes, *, known_types: set[str] | None = None) -> TaggedFile:
    """Read and check an upload; `known_types` (the training file's) makes validation
    and test files refuse types the model was never taught."""
    text = decode(data)
    if isinstance(text, Issue):  # no sentences: a guess at characters helps nobody
        guess = parse(data.decode("utf-8", errors="replace")).format
        return TaggedFile(guess, "iob2", [], group_issues([text]), [])
    parsed = parse(text)
    scheme, tagged, issues = _normalise(parsed.sentences)
    issues = parsed.issues + issues + _checks(tagged, known_types)
    sentences = [s for s, _ in tagged]
    if not sentences and not any(i.code not in WARNING_CODES for i in issues):
        message = (
            "the file has no sentences; write one token and its tag per line with a blank "
            "line between sentences, or one JSON object per line"
        )
        issues.append(Issue("no_sentences", 0, message))
    elif sentences and not any(tag != "O" for s in sentences for tag in s.tags):
        message = "no entities in the whole file: every tag is O; tag at least one entity type"
        issues.append(Issue("no_entities", 0, message))
    problems = group_issues(issues)
    unknown = sorted({tag[2:] for s in sentences for tag in s.tags} - (known_types or set()))
    for problem in problems:
        if problem.code == "unknown_tag":  # one message naming every unknown type
            problem.message = (
                f"types not in the training file: {', '.join(t for t in unknown if t)} "
                f"(lines {_line_list(problem.lines)}); the training file has "
                f"{', '.join(sorted(known_types or ())) or 'none'}: use those, or add "
                "examples of the new types to the training file"
            )
    return TaggedFile(
        format=parsed.format,
        scheme=scheme,
        sentences=sentences,
        errors=[p for p in problems if p.code not in WARNING_CODES],
        warnings=[p for p in problems if p.code in WARNING_CODES],
    )


def looks_tagged(head: bytes) -> bool:
    """Whether the first few KB of an upload are entity tagging rather than a table."""
    text = head.decode("utf-8-sig", errors="replace").lstrip()
    if text.startswith("{"):  # the keys, read even from a first record cut off by the sniff
        keys = set(re.findall(r'"(tokens|tags|text|spans)"\s*:', text.split("\n")[0]))
        return {"tokens", "tags"} <= keys or {"text", "spans"} <= keys
    lines = text.split("\n")
    if len(lines) > 1 and not text.endswith("\n"):
        lines.pop()  # cut off mid-line by the sniff
    stripped = [line.strip() for line in lines]
    rows = [line.split() for line in stripped if line and not line.startswith("-DOCSTART-")]
    tagged = sum(2 <= len(row) <= 10 and _is_iob(row[-1]) for row in rows)
    return len(rows) >= 2 and tagged >= 0.9 * len(rows)


def entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, first token, last token + 1) of each entity in IOB2 tags; an I- of another
    type than the one before begins an entity, as conlleval reads it."""
    found: list[tuple[str, int, int]] = []
    kind: str | None = None
    start = 0
    for i, tag in enumerate(tags):
        if tag.startswith("I-") and tag[2:] == kind:
            continue
        if kind is not None:
            found.append((kind, start, i))
        kind, start = (None, i) if tag == "O" else (tag.partition("-")[2] or tag, i)
    if kind is not None:
        found.append((kind, start, len(tags)))
    return found


def spans_to_text(
    text: str, offsets: Sequence[tuple[int, int]], tags: list[str]
) -> list[dict[str, Any]]:
    """Entities as character spans of `text`, for highlighting; tags past the offsets (a
    truncated prediction the other way round) are left out."""
    return [
        {
            "label": kind,
            "start": offsets[a][0],
            "end": offsets[b - 1][1],
            "text": text[offsets[a][0] : offsets[b - 1][1]],
        }
        for kind, a, b in entities(tags)
        if b <= len(offsets)
    ]


def _is_iob(tag: str) -> bool:
    match = PREFIX.fullmatch(tag)
    return tag == "O" or bool(match and match[2])


def _read_tag(tag: str) -> tuple[str, str]:
    """(kind, type): ("O", "") outside, ("B" | "I", type) prefixed, ("", type) a plain type,
    ("?", "") no tag at all."""
    if tag == "O":
        return "O", ""
    match = PREFIX.fullmatch(tag)
    if match:
        return ("B" if match[1].upper() in STARTS else "I", match[2]) if match[2] else ("?", "")
    return ("", tag) if tag.strip() else ("?", "")


def _normalise(
    raw: list[RawSentence],
) -> tuple[str, list[tuple[TaggedSentence, list[int]]], list[Issue]]:
    """The file's scheme, its sentences in IOB2 (each with its tags' lines) and the issues.

    IOB1 is told from ill-formed IOB2 by where B- stands: IOB1 writes B-X only between two
    entities of type X, so a file where an I- begins an entity and no B- follows O or
    another type is IOB1 and converts silently; elsewhere such an I- is a repaired warning.
    """
    read = [[_read_tag(tag) for tag in s.tags] for s in raw]
    kinds = Counter(kind for tags in read for kind, _ in tags)
    prefixed, plain = kinds["B"] + kinds["I"], kinds[""]
    starts = {"B": False, "I": False}  # a B- / an I- that follows O or another type
    for tags in read:
        before: str | None = None
        for kind, type_ in tags:
            if kind in starts and before != type_:
                starts[kind] = True
            before = type_ if kind in ("B", "I", "") else None
    if not prefixed:
        scheme = "plain" if plain else "iob2"
    else:
        scheme = "iob1" if starts["I"] and not starts["B"] else "iob2"
    name_plain = plain <= prefixed  # a mixed file: name the lines of the rarer kind
    issues: list[Issue] = []
    out: list[tuple[TaggedSentence, list[int]]] = []
    for s, tags in zip(raw, read, strict=True):
        iob2: list[str] = []
        before, before_tag = None, "the start of the sentence"
        for (kind, type_), tag, line in zip(tags, s.tags, s.tag_lines, strict=True):
            if kind == "?":
                message = f"line {line}: {tag!r} is not a tag; write O or a type such as B-PER"
                issues.append(Issue("bad_tag", line, message))
            elif prefixed and plain and (kind == "" if name_plain else kind in ("B", "I")):
                hint = " (only a capital O means outside)" if tag.upper() in ("O", "0") else ""
                side = (
                    "no B-/I- prefix while most tags have one"
                    if name_plain
                    else ("a B-/I- prefix while most tags have none")
                )
                message = f"line {line}: tag {tag!r} has {side}; use one scheme per file{hint}"
                issues.append(Issue("mixed_schemes", line, message))
            if kind in ("O", "?"):
                iob2.append("O")
                before = None
            else:
                if kind == "I" and before != type_ and scheme == "iob2":
                    message = (
                        f"line {line}: {tag} follows {before_tag}, so it begins an entity; "
                        f"read as B-{type_}. Write B-{type_} on an entity's first token"
                    )
                    issues.append(Issue("ill_formed_sequence", line, message))
                inside = before == type_ and kind in ("I", "")
                iob2.append(("I-" if inside else "B-") + type_)
                before = type_
            before_tag = tag
        sentence = TaggedSentence(s.tokens, iob2, s.line, s.text, s.offsets)
        out.append((sentence, s.tag_lines))
    return scheme, out, issues


def _checks(
    tagged: list[tuple[TaggedSentence, list[int]]], known_types: set[str] | None
) -> list[Issue]:
    issues: list[Issue] = []
    seen: dict[tuple[str, ...], int] = {}
    for s, tag_lines in tagged:
        if len(s.tokens) > MAX_WORDS:
            message = (
                f"line {s.line}: a sentence of {len(s.tokens)} words; models read at most "
                f"{MAX_WORDS} tokens at a time, so later words go untagged: split it"
            )
            issues.append(Issue("long_sentence", s.line, message))
        key = tuple(s.tokens)
        if key in seen:
            message = (
                f"line {s.line}: repeats the sentence at line {seen[key]}; remove copies: "
                "they count twice and can land in training and evaluation alike"
            )
            issues.append(Issue("duplicates", s.line, message))
        else:
            seen[key] = s.line
        if known_types is not None:
            for tag, line in zip(s.tags, tag_lines, strict=True):
                if tag != "O" and tag[2:] not in known_types:
                    message = f"line {line}: type {tag[2:]!r} is not in the training file"
                    issues.append(Issue("unknown_tag", line, message))
    return issues


def group_issues(issues: list[Issue]) -> list[Problem]:
    """One problem per code, in order of first appearance: the first message in full, the
    count of the others and their first lines."""
    by_code: dict[str, list[Issue]] = {}
    for issue in issues:
        by_code.setdefault(issue.code, []).append(issue)
    problems = []
    for code, group in by_code.items():
        lines = sorted({i.line for i in group if i.line > 0})
        message = group[0].message
        if len(group) > 1:
            message += f" ({len(group) - 1} more like this: lines {_line_list(lines)})"
        problems.append(Problem(code, message, lines[:MAX_LINES]))
    return problems


def _line_list(lines: list[int]) -> str:
    shown = ", ".join(map(str, lines[:MAX_LINES]))
    return shown + (f" and {len(lines) - MAX_LINES} more" if len(lines) > MAX_LINES else "")


def _histogram(lengths: list[int], bins: int = 10) -> dict[str, list[float] | list[int]]:
    """Sentence lengths in words, `bins` equal bins from the shortest to the longest."""
    if not lengths:
        return {"edges": [], "counts": []}
    low, high = float(min(lengths)), float(max(lengths))
    if low == high:  # one length: a bin of width 1 around it, as numpy does
        low, high = low - 0.5, high + 0.5
    width = (high - low) / bins
    counts = [0] * bins
    for n in lengths:
        counts[min(int((n - low) / width), bins - 1)] += 1
    return {"edges": [round(low + width * i, 3) for i in range(bins + 1)], "counts": counts}
