"""Entity tagging through worker.training on a real tiny BERT: real steps on the CPU, no mocks.

Sentences are filler words with entities made of class words (tests/factories.py): a sport
word is a SPORT entity, two money words in a row one MONEY entity, and so on; a short
max_length cuts the longer sentences into several windows. The export must load with
AutoModelForTokenClassification and the token-classification pipeline."""

from __future__ import annotations

import json
import os
import random
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
from transformers import AutoModelForTokenClassification, pipeline

from tests.factories import CLASS_WORDS, FILLER, make_tiny_bert
from worker.training.reporting import MemoryReporter
from worker.training.run import run_training
from worker.training.spec import TokenExamples, TrainParams, TrainSpec
from worker.training.tasks.tagged_text import entities

TYPES = ["SPORT", "MONEY", "MUSIC"]
TAGS = ["O", *(f"{p}-{t}" for t in TYPES for p in ("B", "I"))]


def tagged_sentences(n: int, seed: int = 0) -> TokenExamples:
    rng = random.Random(seed)
    words, labels = [], []
    for _ in range(n):
        sentence: list[str] = []
        tags: list[str] = []
        for _ in range(rng.randint(1, 3)):
            sentence += [rng.choice(FILLER) for _ in range(rng.randint(1, 8))]
            tags += ["O"] * (len(sentence) - len(tags))
            kind = rng.randrange(len(TYPES))
            size = rng.choice([1, 1, 2])
            sentence += [rng.choice(CLASS_WORDS[kind]) for _ in range(size)]
            tags += [f"B-{TYPES[kind]}"] + [f"I-{TYPES[kind]}"] * (size - 1)
        words.append(sentence)
        labels.append([TAGS.index(t) for t in tags])
    return TokenExamples(words=words, labels=labels)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def spec_for(tmp: Path, model: str, strategy: str, examples: TokenExamples, **params) -> TrainSpec:
    n = len(examples)
    n_train, n_val = int(n * 0.6), int(n * 0.2)
    return TrainSpec(
        job_id=9,
        model_id="tiny-bert",
        model_path=model,
        strategy=strategy,
        label_names=TAGS,
        examples=examples,
        train_idx=list(range(n_train)),
        validation_idx=list(range(n_train, n_train + n_val)),
        test_idx=list(range(n_train + n_val, n)),
        dataset_name="synthetic entities",
        dataset_fingerprint=f"synthetic-entities-{n}",
        params=TrainParams(**{"epochs": 6, "batch_size": 16, "max_length": 16, **params}),
        output_dir=tmp / f"job-{strategy}",
        cache_dir=tmp / "feature-cache",
        torch_threads=2,
        task="token_classification",
    )


@pytest.mark.parametrize(
    ("strategy", "floor"),
    [("transfer_frozen", 0.55), ("finetune_full", 0.55), ("finetune_lora", 0.4), ("lp_ft", 0.55)],
)
def test_entity_tagging_learns_spans_and_exports_a_token_classifier(
    tiny_bert: str, tmp_path: Path, strategy: str, floor: float
) -> None:
    examples = tagged_sentences(200)
    params = {} if strategy == "transfer_frozen" else {"learning_rate": 1e-2, "epochs": 8}
    spec = spec_for(tmp_path, tiny_bert, strategy, examples, **params)
    m = run_training(spec, MemoryReporter()).metrics

    assert m["headline_metric"] == "test_entity_f1"
    assert m["test_entity_f1"] > floor, m
    for key in ("test_entity_precision", "test_entity_recall", "test_token_accuracy"):
        assert 0 <= m[key] <= 1
    assert set(m["per_type"]) == set(TYPES)
    confusion = m["type_confusion"]
    assert confusion["labels"] == [*sorted(TYPES), "O"]
    test_words = sum(len(examples.words[i]) for i in spec.test_idx)
    assert sum(map(sum, confusion["matrix"])) == test_words  # every word scored once

    rows = json.loads((spec.output_dir / "validation_predictions.json").read_text())
    assert [r["index"] for r in rows] == spec.validation_idx
    first = rows[0]
    truth = [TAGS[t] for t in examples.labels[first["index"]]]
    assert first["true"] == [list(e) for e in entities(truth)]

    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(spec.output_dir / "export.zip") as archive:
        archive.extractall(folder)
    model = AutoModelForTokenClassification.from_pretrained(folder / "model")
    assert model.config.id2label == dict(enumerate(TAGS))
    card = (folder / "README.md").read_text()
    assert 'pipeline("token-classification"' in card and "per_type" not in card
    if strategy == "finetune_full":
        tag = pipeline(
            "token-classification", model=str(folder / "model"), aggregation_strategy="simple"
        )
        found = tag("the goal was a day for the bank")
        assert {e["entity_group"] for e in found} == {"SPORT", "MONEY"}, found


def test_long_sentences_are_windowed_not_truncated(tiny_bert: str, tmp_path: Path) -> None:
    """A 60-word sentence at max_length 16 is scored on every word."""
    examples = tagged_sentences(60, seed=1)
    long_words = ["the"] * 50 + ["goal", "match"] + ["day"] * 8
    long_tags = [0] * 50 + [TAGS.index("B-SPORT"), TAGS.index("I-SPORT")] + [0] * 8
    examples = TokenExamples(
        words=[*examples.words[:-1], long_words], labels=[*examples.labels[:-1], long_tags]
    )
    spec = spec_for(tmp_path, tiny_bert, "transfer_frozen", examples)
    m = run_training(spec, MemoryReporter()).metrics
    test_words = sum(len(examples.words[i]) for i in spec.test_idx)
    assert sum(map(sum, m["type_confusion"]["matrix"])) == test_words
    assert len(examples.words[-1]) == 60 and len(examples) - 1 in spec.test_idx


def test_a_resumed_tagging_run_ends_where_an_uninterrupted_one_does(
    tiny_bert: str, tmp_path: Path
) -> None:
    from dataclasses import replace

    from tests.test_checkpoints import interrupted_then_resumed

    examples = tagged_sentences(80, seed=2)
    params = {"epochs": 3, "learning_rate": 3e-3, "batch_size": 8}
    whole = run_training(
        spec_for(tmp_path / "a", tiny_bert, "finetune_full", examples, **params), MemoryReporter()
    )
    spec = spec_for(tmp_path / "b", tiny_bert, "finetune_full", examples, **params)
    _, second, result = interrupted_then_resumed(
        replace(spec, checkpoint_every_seconds=0.0), stop_after_steps=14
    )
    assert any("resumed from a checkpoint" in line for line in second.logs)
    assert result.metrics["test_entity_f1"] == pytest.approx(whole.metrics["test_entity_f1"])
    assert result.metrics["val_loss"] == pytest.approx(whole.metrics["val_loss"], rel=1e-5)
