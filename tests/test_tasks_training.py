"""Multi-label and regression through worker.training on a real tiny BERT: real steps on the
CPU, no mocks. The texts carry class words (tests/factories.py), so both tasks are
learnable: a text's labels are the classes whose words it holds; its target is a number
fixed by them. Each export is loaded the way its card says, and must give what the job
measured."""

from __future__ import annotations

import json
import os
import random
import zipfile
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.factories import CLASS_WORDS, FILLER, LABELS, make_tiny_bert
from worker.training.reporting import MemoryReporter
from worker.training.run import run_training
from worker.training.spec import TextExamples, TrainParams, TrainSpec
from worker.training.tasks import multi_label, regression

VALUES = [10.0, 50.0, 200.0]  # what each class word adds to a regression target


def tagged_text(rng: random.Random, classes: list[int]) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(2, 20))]
    for label in classes:
        for _ in range(2):
            words.insert(rng.randrange(len(words) + 1), rng.choice(CLASS_WORDS[label]))
    return " ".join(words)


def multi_label_examples(n: int, seed: int = 0) -> TextExamples:
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        classes = sorted(rng.sample(range(len(LABELS)), rng.choice([1, 1, 2, 3])))
        texts.append(tagged_text(rng, classes))
        labels.append(classes)
    return TextExamples(texts=texts, text_pairs=None, labels=labels)


def regression_examples(n: int, seed: int = 0) -> TextExamples:
    """Targets in the hundreds (far from standard units): one class's value plus noise."""
    rng = random.Random(seed)
    texts, targets = [], []
    for i in range(n):
        label = i % len(LABELS)
        texts.append(tagged_text(rng, [label]))
        targets.append(VALUES[label] + rng.gauss(0, 5))
    return TextExamples(texts=texts, text_pairs=None, labels=targets)


def spec_for(tmp: Path, model: str, task: str, strategy: str, examples, names, **params):
    n = len(examples)
    n_train, n_val = int(n * 0.6), int(n * 0.2)
    return TrainSpec(
        job_id=7,
        model_id="tiny-bert",
        model_path=model,
        strategy=strategy,
        label_names=names,
        examples=examples,
        train_idx=list(range(n_train)),
        validation_idx=list(range(n_train, n_train + n_val)),
        test_idx=list(range(n_train + n_val, n)),
        dataset_name=f"synthetic {task}",
        dataset_fingerprint=f"synthetic-{task}-{n}",
        params=TrainParams(**{"epochs": 4, "batch_size": 16, "max_length": 48, **params}),
        output_dir=tmp / f"job-{task}-{strategy}",
        cache_dir=tmp / "feature-cache",
        torch_threads=2,
        task=task,
    )


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def exported(spec: TrainSpec, tmp: Path) -> Path:
    folder = tmp / f"unzipped-{spec.task}-{spec.strategy}"
    with zipfile.ZipFile(spec.output_dir / "export.zip") as archive:
        archive.extractall(folder)
    return folder


def reloaded(folder: Path, texts: list[str]) -> np.ndarray:
    tokenizer = AutoTokenizer.from_pretrained(folder / "model")
    model = AutoModelForSequenceClassification.from_pretrained(folder / "model").eval()
    with torch.no_grad():
        inputs = tokenizer(texts, truncation=True, max_length=48, padding=True, return_tensors="pt")
        return model(**inputs).logits.numpy()


@pytest.mark.parametrize("strategy", ["transfer_frozen", "finetune_full", "finetune_lora"])
def test_multi_label_learns_each_label_and_exports_its_thresholds(
    tiny_bert: str, tmp_path: Path, strategy: str
) -> None:
    examples = multi_label_examples(240)
    params = {"learning_rate": 5e-3, "epochs": 8} if strategy != "transfer_frozen" else {}
    spec = spec_for(tmp_path, tiny_bert, "multi_label", strategy, examples, LABELS, **params)
    m = run_training(spec, MemoryReporter()).metrics

    assert m["headline_metric"] == "test_macro_f1" and m["headline_higher_is_better"]
    for key in ("test_micro_f1", "test_macro_f1", "test_subset_accuracy", "test_hamming_loss"):
        assert 0.0 <= m[key] <= 1.0, key
    # Two words per label are easy to find once the encoder adapts; the tiny BERT's frozen
    # [CLS] was pretrained to tell one class from another, not to list several.
    assert m["test_macro_f1"] > (0.6 if strategy == "transfer_frozen" else 0.85), m
    assert set(m["per_label"]) == set(LABELS)
    curves = m["val_threshold_f1"]
    assert set(curves["f1"]) == set(LABELS) and len(curves["thresholds"]) == 19

    folder = exported(spec, tmp_path)
    config = json.loads((folder / "model" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert config["thresholds"] == {k: v["threshold"] for k, v in m["per_label"].items()}
    card = (folder / "README.md").read_text()
    assert 'config["thresholds"]' in card and "| label | threshold |" in card

    # The standard class, with the card's rule, gives the labels the job scored.
    test_texts = [examples.texts[i] for i in spec.test_idx]
    probabilities = 1 / (1 + np.exp(-reloaded(folder, test_texts)))
    thresholds = np.array([config["thresholds"][name] for name in LABELS])
    predicted = (probabilities >= thresholds).astype(int)
    truth = multi_label.multi_hot([examples.labels[i] for i in spec.test_idx], len(LABELS))
    scores = multi_label.scores_at(predicted.astype(float), truth, np.full(len(LABELS), 0.5))
    assert scores["macro_f1"] == pytest.approx(m["test_macro_f1"], abs=1e-6)

    rows = json.loads((spec.output_dir / "validation_predictions.json").read_text())
    assert len(rows) == len(spec.validation_idx)
    assert {"index", "text", "true", "predicted", "scores"} <= set(rows[0])


@pytest.mark.parametrize("strategy", ["transfer_frozen", "finetune_full", "lp_ft"])
def test_regression_predicts_in_the_targets_units_and_the_export_agrees(
    tiny_bert: str, tmp_path: Path, strategy: str
) -> None:
    examples = regression_examples(240)
    params = {"learning_rate": 2e-3, "epochs": 6} if strategy != "transfer_frozen" else {}
    spec = spec_for(tmp_path, tiny_bert, "regression", strategy, examples, ["price"], **params)
    m = run_training(spec, MemoryReporter()).metrics

    assert m["headline_metric"] == "test_mae" and not m["headline_higher_is_better"]
    truth = np.array([examples.labels[i] for i in spec.test_idx])
    baseline = np.abs(truth - np.mean([examples.labels[i] for i in spec.train_idx])).mean()
    assert m["test_mae"] < 0.35 * baseline, (m["test_mae"], baseline)  # ~78 predicting the mean
    assert m["test_r2"] > 0.8 and m["test_spearman"] > 0.7
    assert m["target_std"] > 50  # trained on standardised targets…

    folder = exported(spec, tmp_path)
    config = json.loads((folder / "model" / "config.json").read_text())
    assert config["problem_type"] == "regression" and config["target"] == "price"
    # …and the export answers in the user's units: its MAE is the job's.
    predicted = reloaded(folder, [examples.texts[i] for i in spec.test_idx])[:, 0]
    assert np.abs(predicted - truth).mean() == pytest.approx(m["test_mae"], rel=1e-3)

    views = m
    assert len(views["scatter"]) == len(spec.test_idx)
    assert sum(views["residual_histogram"]["counts"]) == len(spec.test_idx)
    worst = views["worst_predictions"]
    assert abs(worst[0]["predicted"] - worst[0]["true"]) >= abs(
        worst[-1]["predicted"] - worst[-1]["true"]
    )


def test_regression_headline_is_the_jobs_choice(tiny_bert: str, tmp_path: Path) -> None:
    """R² ranks epochs when chosen: higher is better, and early stopping knows it."""
    examples = regression_examples(120, seed=3)
    spec = spec_for(
        tmp_path, tiny_bert, "regression", "finetune_full", examples, ["price"],
        regression_metric="r2", learning_rate=2e-3, epochs=3,
    )  # fmt: skip
    m = run_training(spec, MemoryReporter()).metrics
    assert m["headline_metric"] == "test_r2" and m["headline_higher_is_better"]


def test_iterative_split_reaches_every_label_in_every_part() -> None:
    rng = random.Random(0)
    labels = [sorted(rng.sample(range(6), rng.randint(1, 3))) for _ in range(200)]
    labels += [[6]] * 10  # a rare label still reaches validation and test
    split = multi_label.split(labels, 7, seed=1, validation_fraction=0.1, test_fraction=0.1)
    assert sorted(split.train + split.validation + split.test) == list(range(len(labels)))
    for part in (split.validation, split.test):
        assert {j for i in part for j in labels[i]} == set(range(7))
    again = multi_label.split(labels, 7, seed=1, validation_fraction=0.1, test_fraction=0.1)
    assert again == split


def test_regression_split_covers_the_whole_range() -> None:
    targets = [float(i) for i in range(100)]
    split = regression.split(targets, seed=0, validation_fraction=0.1, test_fraction=0.1)
    for part in (split.validation, split.test):
        assert min(part) < 20 and max(part) >= 80


def test_label_cells_are_read_as_each_task_reads_them() -> None:
    assert multi_label.read_labels("a|b| a", "|") == ["a", "b"]
    assert multi_label.read_labels('["x", "y"]', None) == ["x", "y"]
    assert multi_label.read_labels("", "|") is None
    assert multi_label.detect_separator(["a;b", "c", "d;e"]) == ";"
    with pytest.raises(ValueError, match="JSON list"):
        multi_label.read_labels("[oops", "|")
    assert regression.read_target(" 3.5 ") == 3.5 and regression.read_target("") is None
    with pytest.raises(ValueError, match="not a number"):
        regression.read_target("three")


def test_targets_past_32_bits_are_refused_and_close_ones_summarised() -> None:
    """Found by tests/test_upload_task_properties.py: a JSON integer past a float's range
    raised OverflowError, and targets a few units in the last place apart made np.histogram
    raise, so the upload's check crashed instead of answering."""
    for cell in (10**400, "1e308", -(10**39), 1e300):
        with pytest.raises(ValueError, match="too large a target"):
            regression.read_target(cell)
    assert regression.read_target(-3.0e38) == -3.0e38
    summary = regression.summarise([0.3, 0.30000000000000004, 0.3], "y")
    assert summary.errors == [] and summary.extra["histogram"]["counts"] == [3]
    spread = np.random.default_rng(0).normal(size=50)  # where numpy can: numpy's own bins
    counts, edges = np.histogram(spread, bins=20)
    assert regression.histogram(spread) == {"edges": edges.tolist(), "counts": counts.tolist()}


def test_a_spec_whose_labels_do_not_fit_its_task_is_refused(tiny_bert: str, tmp_path) -> None:
    spec = spec_for(
        tmp_path, tiny_bert, "regression", "finetune_full", regression_examples(30), ["a", "b"]
    )
    with pytest.raises(ValueError, match="one number"):
        spec.check()
    spec = replace(spec, label_names=["price"], task="ranking")
    with pytest.raises(ValueError, match="unknown task"):
        spec.check()


@pytest.mark.parametrize("task", ["multi_label", "regression"])
def test_a_resumed_run_of_each_task_ends_where_an_uninterrupted_one_does(
    tiny_bert: str, tmp_path: Path, task: str
) -> None:
    from tests.test_checkpoints import interrupted_then_resumed

    examples, names = (
        (multi_label_examples(90, seed=5), LABELS)
        if task == "multi_label"
        else (regression_examples(90, seed=5), ["price"])
    )
    params = {"epochs": 3, "learning_rate": 1e-3, "batch_size": 8}
    whole = run_training(
        spec_for(tmp_path / "a", tiny_bert, task, "finetune_full", examples, names, **params),
        MemoryReporter(),
    )
    spec = spec_for(tmp_path / "b", tiny_bert, task, "finetune_full", examples, names, **params)
    _, second, result = interrupted_then_resumed(
        replace(spec, checkpoint_every_seconds=0.0), stop_after_steps=10
    )
    assert any("resumed from a checkpoint" in line for line in second.logs)
    headline = whole.metrics["headline_metric"]
    assert result.metrics[headline] == pytest.approx(whole.metrics[headline], rel=1e-5)
    assert result.metrics["val_loss"] == pytest.approx(whole.metrics["val_loss"], rel=1e-5)
