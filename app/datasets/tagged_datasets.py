"""Entity-tagging datasets: CoNLL or JSONL files of tagged words, checked and read back.

upload (a CoNLL file, or JSONL with tokens + tags or text + spans) → stored as
<id>/train.conll or <id>/train.jsonl (likewise validation/test) → tagged_text.read_tagged:
every problem named by its line → the dataset's report, tag names and preview. Training
reads the same files again (`read_sentences`), so what was checked is what trains.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from app.datasets.validation import DatasetInvalid, Issue
from worker.training.tasks.tagged_text import TaggedFile, TaggedSentence, looks_tagged, read_tagged

NAME = "token_classification"
PREVIEW_SENTENCES = 20


def is_tagged_upload(filename: str, head: bytes, task: str | None) -> str | None:
    """The stored format ("conll" or "jsonl") of an entity-tagging upload, or None for any
    other file. Named task wins; otherwise the file's first bytes decide."""
    if task not in (None, NAME):
        return None
    if task is None and not looks_tagged(head):
        return None
    return "jsonl" if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{") else "conll"


def tag_names(types: list[str]) -> list[str]:
    """The head's outputs: O, then B- and I- of each type."""
    return ["O", *(f"{prefix}-{kind}" for kind in types for prefix in ("B", "I"))]


def _read(path: Path, known_types: set[str] | None = None) -> TaggedFile:
    return read_tagged(path.read_bytes(), known_types=known_types)


def examine_tagged(files: dict[str, Path]) -> dict[str, Any]:
    """Read and check every part (validation and test may only use the training file's
    types); the dataset's fields, or DatasetInvalid naming each problem's lines."""
    train = _read(files["train"])
    parts = {"train": train}
    types = set(train.entity_types())
    for part in ("validation", "test"):
        if part in files:
            parts[part] = _read(files[part], known_types=types)
    errors = [Issue(p.code, p.message, p.lines) for p in train.errors]
    warnings = [Issue(p.code, p.message, p.lines) for p in train.warnings]
    for part, tagged in parts.items():
        if part != "train":
            errors += [Issue(p.code, f"{part} file: {p.message}", p.lines) for p in tagged.errors]
            warnings += [
                Issue(p.code, f"{part} file: {p.message}", p.lines) for p in tagged.warnings
            ]
    summary = train.report()
    report = {
        "errors": [asdict(e) for e in errors],
        "warnings": [asdict(w) for w in warnings],
        "num_rows": len(train.sentences),
        "class_counts": summary["entities"],  # entities per type
        "text_length": {},
        "labels": {"task": NAME, "names": train.entity_types(), **summary},
        "parts": {part: len(tagged.sentences) for part, tagged in parts.items()},
    }
    if errors:
        raise DatasetInvalid(errors, report)
    return {
        "columns": ["tokens", "tags"],
        "text_column": "tokens",
        "text_pair_column": None,
        "label_column": "tags",
        "task": NAME,
        "label_separator": None,
        "num_rows": len(train.sentences),
        "label_names": tag_names(train.entity_types()),
        "report": report,
        "preview": [_preview(s) for s in train.sentences[:PREVIEW_SENTENCES]],
    }


def _preview(sentence: TaggedSentence) -> dict[str, Any]:
    from worker.training.tasks.tagged_text import entities

    return {
        "line": sentence.line,
        "tokens": sentence.tokens,
        "entities": [list(e) for e in entities(sentence.tags)],
    }


def read_sentences(files: dict[str, Path]) -> dict[str, list[TaggedSentence]]:
    """Every part's sentences, as training reads them."""
    return {part: _read(path).sentences for part, path in files.items()}
