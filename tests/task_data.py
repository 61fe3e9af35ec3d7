"""Data for the tasks beyond one class per row, as files a person would upload.

Multi-label text is real: kaomoji-dataset's emotion tags (derived from synonym lists, so
some tags always come together). No offline set was found for text regression or entity
tagging, so those are built here with a known relation: a review's score is the mean of its
adjectives' scores; names, cities and companies sit in templated sentences.
"""

from __future__ import annotations

import csv
import gzip
import json
import random
from importlib import resources
from pathlib import Path

# The most frequent emotion tags: five synonyms of happy, five of angry, two of surprised.
KAOMOJI_TAGS = (
    "happy", "smile", "glad", "cheerful", "joy", "angry", "mad", "rage", "furious", "annoyed",
    "surprised", "shocked",
)  # fmt: skip


def kaomoji_rows(n: int, *, seed: int = 0) -> list[tuple[str, str]]:
    """(kaomoji, "tag|tag|…") for `n` kaomoji carrying at least one of KAOMOJI_TAGS."""
    data = resources.files("kaomoji_dataset") / "data" / "kaomoji.jsonl.gz"
    with gzip.open(str(data), "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    kept = [
        (r["text"], "|".join(t for t in r["emotion"] if t in KAOMOJI_TAGS))
        for r in rows
        if set(r["emotion"]) & set(KAOMOJI_TAGS)
    ]
    random.Random(seed).shuffle(kept)
    return kept[:n]


ADJECTIVES = {
    "terrible": 1.0, "awful": 1.2, "dirty": 1.8, "poor": 2.0, "noisy": 2.3, "plain": 3.0,
    "decent": 3.3, "fine": 3.4, "good": 3.9, "friendly": 4.1, "lovely": 4.5, "superb": 4.8,
    "excellent": 5.0,
}  # fmt: skip
TEMPLATES = (
    "The room was {a} and the staff were {b}.",
    "A {a} breakfast, {b} service overall.",
    "We found the location {a}; the price felt {b}.",
    "{A} stay. The bed was {b}.",
)


def review_rows(n: int, *, seed: int = 0) -> list[tuple[str, float]]:
    """(review, score): the mean of its two adjectives' scores, times 20 (0–100 points),
    with a little noise, as scores people give have."""
    rng = random.Random(seed)
    names = list(ADJECTIVES)
    rows = []
    for _ in range(n):
        a, b = rng.choice(names), rng.choice(names)
        text = rng.choice(TEMPLATES).format(a=a, b=b, A=a.capitalize())
        score = 10 * (ADJECTIVES[a] + ADJECTIVES[b]) + rng.gauss(0, 2)
        rows.append((text, round(score, 1)))
    return rows


PEOPLE = ("Alice Martin", "Bob", "Chen Wei", "Dana Scully", "Omar", "Priya Patel", "Lars")
CITIES = ("Paris", "Lagos", "New York", "Osaka", "Berlin", "Lima", "Cairo")
COMPANIES = ("Acme Corp", "Globex", "Initech", "Umbrella", "Hooli")
SENTENCES = (
    "{PER} flew to {LOC} on Monday .",
    "{PER} joined {ORG} last year .",
    "The office of {ORG} in {LOC} is closing .",
    "Yesterday {PER} met {PER} in {LOC} .",
    "{ORG} hired {PER} to lead the team .",
    "Nothing happened today .",
)


def tagged_sentences(n: int, *, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """(words, IOB2 tags) of templated sentences with people, places and companies."""
    rng = random.Random(seed)
    pools = {"PER": PEOPLE, "LOC": CITIES, "ORG": COMPANIES}
    out = []
    for _ in range(n):
        words: list[str] = []
        tags: list[str] = []
        for piece in rng.choice(SENTENCES).split():
            kind = piece.strip("{}") if piece.startswith("{") else None
            if kind is None:
                words.append(piece)
                tags.append("O")
                continue
            name = rng.choice(pools[kind]).split()
            words += name
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(name) - 1)
        out.append((words, tags))
    return out


def write_conll(path: Path, sentences: list[tuple[list[str], list[str]]]) -> Path:
    blocks = [
        "\n".join(f"{w} {t}" for w, t in zip(words, tags, strict=True)) for words, tags in sentences
    ]
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def write_table(path: Path, header: tuple[str, str], rows: list[tuple[object, object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path
