"""worker.training on real (tiny or packaged) models: no mocks, real training steps on the CPU.

A tiny BERT (hidden 32, 2 layers) is built from a config and a WordPiece vocabulary written
on the spot and saved like a pretrained folder; synthetic texts carry class words, so the
tasks are learnable in a few epochs. The slow test trains the packaged MiniLM on BBC News.
"""

from __future__ import annotations

import json
import os
import random
import zipfile
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # these machines have no Hub; fail fast, not slow

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GPT2Config,
    GPT2ForSequenceClassification,
    pipeline,
)

from tests.factories import FILLER, LABELS, make_tiny_bert, synthetic_text, tiny_classifier
from worker.training.classifier import count_params, freeze_all_but
from worker.training.feature_cache import cache_key
from worker.training.reporting import Cancelled, MemoryReporter
from worker.training.run import run_training
from worker.training.spec import STRATEGIES, TextExamples, TrainParams, TrainSpec
from worker.training.tasks.classification import full_report
from worker.training.text_data import length_grouped_batches, sorted_batches
from worker.training.text_model import first_token_state, head_of, load_text_model

# ---------------------------------------------------------------- helpers (plain functions)

BERT_HEAD_PARAMS = {
    "bert.pooler.dense.weight",
    "bert.pooler.dense.bias",
    "classifier.weight",
    "classifier.bias",
}
METRIC_KEYS = {
    "test_accuracy", "test_macro_f1", "test_loss", "per_class", "confusion_matrix", "labels",
    "best_epoch", "val_accuracy", "val_macro_f1", "val_loss", "trainable_params",
    "total_params", "wall_seconds", "train_examples_per_second", "peak_memory_bytes",
    "epochs_run", "stopped_early", "val_confusion_matrix",
}  # fmt: skip


def synthetic_examples(n: int, *, seed: int = 0, pairs: bool = False) -> TextExamples:
    """Texts of 4 to 33 words, each with three words of its class among filler."""
    rng = random.Random(seed)
    texts, text_pairs, labels = [], [], []
    for i in range(n):
        label = i % len(LABELS)
        texts.append(synthetic_text(rng, label))
        text_pairs.append(" ".join(rng.choice(FILLER) for _ in range(rng.randint(1, 6))))
        labels.append(label)
    return TextExamples(texts=texts, text_pairs=text_pairs if pairs else None, labels=labels)


def make_spec(
    tmp: Path, model_path: str, strategy: str, examples: TextExamples, **params
) -> TrainSpec:
    n = len(examples.texts)
    n_train, n_val = int(n * 0.6), int(n * 0.2)
    return TrainSpec(
        job_id=1,
        model_id="tiny-bert",
        model_path=model_path,
        strategy=strategy,
        label_names=list(LABELS),
        examples=examples,
        train_idx=list(range(n_train)),
        validation_idx=list(range(n_train, n_train + n_val)),
        test_idx=list(range(n_train + n_val, n)),
        dataset_name="synthetic topics",
        dataset_fingerprint=f"synthetic-{n}-{examples.text_pairs is not None}",
        params=TrainParams(**{"epochs": 3, "batch_size": 16, "max_length": 48, **params}),
        output_dir=tmp / f"job-{strategy}",
        cache_dir=tmp / "feature-cache",
        torch_threads=2,
    )


def unzip(path: Path, into: Path) -> Path:
    with zipfile.ZipFile(path) as archive:
        archive.extractall(into)
    return into


def reloaded_logits(folder: Path, spec: TrainSpec, idx: list[int]) -> np.ndarray:
    """Logits of the exported checkpoint, loaded the way a user would load it."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    ex = spec.examples
    enc = tokenizer(
        [ex.texts[i] for i in idx],
        [ex.text_pairs[i] for i in idx] if ex.text_pairs is not None else None,
        truncation=True,
        max_length=spec.params.max_length,
        padding=True,
        return_tensors="pt",
    )
    with torch.inference_mode():
        return model(**enc).logits.float().numpy()


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


# ---------------------------------------------------------------- batching


def test_length_grouped_batches_cover_every_row_once_and_stay_narrow():
    rng = np.random.default_rng(0)
    lengths = rng.integers(4, 128, size=1000)
    idx = np.arange(100, 900)  # a subset, as train_idx is
    epochs = [length_grouped_batches(lengths, idx, 16, seed=7, epoch=e) for e in range(3)]
    for batches in epochs:
        rows = np.concatenate(batches)
        assert sorted(rows.tolist()) == idx.tolist()  # every row exactly once
        assert all(len(b) <= 16 for b in batches)
    # Deterministic for a seed and epoch, different across epochs.
    again = length_grouped_batches(lengths, idx, 16, seed=7, epoch=0)
    assert all((a == b).all() for a, b in zip(epochs[0], again, strict=True))
    assert not all((a == b).all() for a, b in zip(epochs[0], epochs[1], strict=True))
    # Grouping makes batches far narrower than random batches would be.
    random_batches = np.array_split(rng.permutation(idx), len(epochs[0]))
    grouped_width = sum(lengths[b].max() * len(b) for b in epochs[0])
    random_width = sum(lengths[b].max() * len(b) for b in random_batches)
    assert grouped_width < 0.7 * random_width
    evaluation = sorted_batches(lengths, idx, 32)
    assert sorted(np.concatenate(evaluation).tolist()) == idx.tolist()


# ---------------------------------------------------------------- model heads


HEAD_PARAMS = {
    "bert": BERT_HEAD_PARAMS,
    "distilbert": {
        "pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias",
    },
    "roberta": {
        "classifier.dense.weight", "classifier.dense.bias",
        "classifier.out_proj.weight", "classifier.out_proj.bias",
    },
}  # fmt: skip


@pytest.mark.parametrize("arch", ["bert", "distilbert", "roberta"])
def test_head_on_first_token_state_reproduces_the_models_logits(arch):
    torch.manual_seed(0)
    model = tiny_classifier(arch, layers=1).eval()
    inputs = {
        "input_ids": torch.randint(3, 50, (4, 12)),
        "attention_mask": torch.ones(4, 12, dtype=torch.long),
    }
    inputs["attention_mask"][1, 7:] = 0  # a padded row
    head = head_of(model)
    with torch.inference_mode():
        expected = model(**inputs).logits
        got = head.forward(model, first_token_state(model, inputs))
    torch.testing.assert_close(got, expected)
    freeze_all_but(model, head.modules)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == HEAD_PARAMS[arch]


def test_unknown_architecture_is_refused_for_frozen_features():
    model = GPT2ForSequenceClassification(
        GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, num_labels=2)
    )
    with pytest.raises(ValueError, match="does not know the classification head of 'gpt2'"):
        head_of(model)


def test_spec_errors_come_before_any_loading(tmp_path):
    spec = make_spec(tmp_path, str(tmp_path / "no-model"), "lora", synthetic_examples(30))
    with pytest.raises(ValueError, match="unknown strategy"):
        run_training(spec, MemoryReporter())
    spec = replace(make_spec(tmp_path, "x", "finetune_full", synthetic_examples(30)), test_idx=[])
    with pytest.raises(ValueError, match="test_idx is empty"):
        run_training(spec, MemoryReporter())


def test_cache_key_changes_with_everything_features_depend_on(tiny_bert):
    base = {
        "model_id": "tiny-bert",
        "model_path": tiny_bert,
        "dataset_fingerprint": "abc",
        "preprocessing": {"max_length": 64},
    }
    key = cache_key(**base)
    assert key == cache_key(**base)
    changes = (
        {"model_id": "other"},
        {"dataset_fingerprint": "abd"},
        {"preprocessing": {"max_length": 65}},
    )
    for change in changes:
        assert cache_key(**{**base, **change}) != key


# ---------------------------------------------------------------- strategies end to end


def test_transfer_frozen_trains_only_the_head_and_reuses_cached_features(tmp_path, tiny_bert):
    examples = synthetic_examples(300)
    spec = make_spec(tmp_path, tiny_bert, "transfer_frozen", examples, epochs=15)
    first = MemoryReporter()
    result = run_training(spec, first)
    m = result.metrics

    assert METRIC_KEYS | {"feature_cache_hit", "feature_seconds", "head_seconds"} <= m.keys()
    assert m["feature_cache_hit"] is False
    assert m["test_accuracy"] >= 0.8, m
    # Only the head trains: the exact parameter names, and the counts reported.
    _, model = load_text_model(tiny_bert, LABELS)
    freeze_all_but(model, head_of(model).modules)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == BERT_HEAD_PARAMS
    assert (m["trainable_params"], m["total_params"]) == count_params(model)
    assert m["trainable_params"] == 32 * 32 + 32 + 32 * 3 + 3
    assert any(phase == "features" for phase, _, _ in first.progress_events)
    cached = list(spec.cache_dir.iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".safetensors"  # no temporary left

    # A second job on the same model, data and preprocessing skips the forward pass.
    second = MemoryReporter()
    again = run_training(replace(spec, job_id=2, output_dir=tmp_path / "job-2"), second)
    assert again.metrics["feature_cache_hit"] is True
    assert not any(phase == "features" for phase, _, _ in second.progress_events)
    assert again.metrics["feature_seconds"] < m["feature_seconds"]
    assert again.metrics["test_accuracy"] == m["test_accuracy"]  # same seed, same features

    # The export is a standard checkpoint: backbone + trained head reproduce the test scores.
    folder = unzip(result.export_path, tmp_path / "unzipped")
    logits = reloaded_logits(folder / "model", spec, spec.test_idx)
    labels = np.asarray(examples.labels)[spec.test_idx]
    report = full_report(logits, labels, LABELS)
    assert report["confusion_matrix"] == m["confusion_matrix"]
    assert report["loss"] == pytest.approx(m["test_loss"], abs=1e-4)


def test_finetune_full_trains_everything_reports_and_exports(tmp_path, tiny_bert):
    examples = synthetic_examples(300, seed=1, pairs=True)  # text pairs: token_type_ids path
    spec = make_spec(tmp_path, tiny_bert, "finetune_full", examples, epochs=6, learning_rate=1e-3)
    reporter = MemoryReporter()
    result = run_training(spec, reporter)
    m = result.metrics

    assert m.keys() >= METRIC_KEYS
    assert "feature_cache_hit" not in m
    assert m["trainable_params"] == m["total_params"] > 0
    assert m["test_accuracy"] >= 0.8, m
    assert 1 <= m["best_epoch"] <= 6
    assert sum(c["support"] for c in m["per_class"].values()) == len(spec.test_idx)
    assert json.loads(json.dumps(m)) == m  # JSON-serialisable as it stands

    steps_per_epoch = -(-len(spec.train_idx) // 16)
    training = [e for e in reporter.progress_events if e[0] == "training"]
    assert [s for _, s, _ in training] == list(range(1, 6 * steps_per_epoch + 1))
    train_loss = reporter.series("train_loss")
    assert len(train_loss) >= 4 and train_loss[-1][1] < train_loss[0][1]
    val_epochs = [e for _, e, v in reporter.metric_events if "val_macro_f1" in v]
    assert val_epochs == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]

    folder = unzip(result.export_path, tmp_path / "unzipped")
    assert {"README.md", "metrics.json"} <= {p.name for p in folder.iterdir()}
    config = json.loads((folder / "model" / "config.json").read_text())
    assert config["id2label"] == {"0": "sport", "1": "money", "2": "music"}
    args = json.loads((folder / "model" / "training_args.json").read_text())
    assert args["strategy"] == "finetune_full" and args["params"]["learning_rate"] == 1e-3
    assert "AutoModelForSequenceClassification" in (folder / "README.md").read_text()
    logits = reloaded_logits(folder / "model", spec, spec.test_idx)
    report = full_report(logits, np.asarray(examples.labels)[spec.test_idx], LABELS)
    assert report["confusion_matrix"] == m["confusion_matrix"]
    classify = pipeline("text-classification", model=str(folder / "model"), device="cpu")
    assert classify("the goal and the match")[0]["label"] in LABELS


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_cancel_stops_within_a_step_and_publishes_nothing(tmp_path, tiny_bert, strategy):
    spec = make_spec(tmp_path, tiny_bert, strategy, synthetic_examples(120))
    reporter = MemoryReporter(cancel_after_steps=2)  # for lp_ft: in its fine-tuning stage
    with pytest.raises(Cancelled):
        run_training(spec, reporter)
    assert reporter.training_steps == 2
    assert not (spec.output_dir / "export.zip").exists()
    assert not list(spec.output_dir.glob("*.tmp"))
