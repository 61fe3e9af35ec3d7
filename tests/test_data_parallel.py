"""Data-parallel training (issue 16) on this CPU: two gloo ranks under DDP, each training its
share of every batch, against one process with the same global batch and seed; and the
checkpoint of either resuming in the other."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.ddp_ranks import train_in_group
from tests.factories import make_tiny_bert
from tests.test_training_text import make_spec, synthetic_examples
from worker.training import checkpoint
from worker.training.reporting import Cancelled, MemoryReporter
from worker.training.run import run_training

# Same maths, other summation order (two half-batch backward passes, a gloo all-reduce):
# float32 rounding only, which three epochs of steps grow to about 1e-5 here.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def no_dropout_bert(tmp_path_factory) -> str:
    """The tiny pretrained BERT with dropout off, so two runs can differ only by rounding
    (with dropout each rank would draw its own masks)."""
    folder = Path(make_tiny_bert(tmp_path_factory.mktemp("bert")))
    config = json.loads((folder / "config.json").read_text())
    config |= {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def spec_in(root: Path, model: str, strategy: str = "finetune_full", **params):
    examples = synthetic_examples(75, seed=8)  # 45 train rows: a last batch of 5 in each epoch
    settings = {"epochs": 3, "batch_size": 8, "learning_rate": 2e-3, **params}
    spec = make_spec(root, model, strategy, examples, **settings)
    return replace(spec, torch_threads=1, checkpoint_every_seconds=0.0)


def series(events, name: str) -> list[float]:
    return [values[name] for _, _, values in events if name in values]


@pytest.fixture(scope="module")
def alone(tmp_path_factory, no_dropout_bert) -> tuple[dict, MemoryReporter]:
    """The uninterrupted single-process run every test compares with."""
    reporter = MemoryReporter()
    spec = spec_in(tmp_path_factory.mktemp("alone"), no_dropout_bert)
    return run_training(spec, reporter).metrics, reporter


def test_two_ranks_train_what_one_process_trains(tmp_path, no_dropout_bert, alone):
    expected, reporter = alone
    group = train_in_group(spec_in(tmp_path, no_dropout_bert, devices=2), ranks=2)

    got = group["metrics"]
    assert any("2 × cpu, data-parallel" in line for line in group["logs"])
    assert got["train_examples_per_second"] > 0
    for key in ("val_loss", "test_loss", "test_accuracy", "test_macro_f1"):
        assert got[key] == pytest.approx(expected[key], abs=TOLERANCE), key
    assert got["best_epoch"] == expected["best_epoch"]
    # Rank 0 reports the whole batch's loss (both ranks' shares), on the same steps.
    train_loss = [v for _, v in reporter.series("train_loss")]
    assert series(group["metric_events"], "train_loss") == pytest.approx(train_loss, abs=TOLERANCE)
    assert [s for s, _, v in group["metric_events"] if "val_loss" in v] == [
        s for s, _ in reporter.series("val_loss")
    ]


@pytest.mark.parametrize("first", ["group", "alone"])
def test_a_checkpoint_resumes_across_group_sizes(tmp_path, no_dropout_bert, alone, first):
    """Stopped mid-epoch 2 by one kind of run, finished by the other: the end is the
    uninterrupted run's."""
    expected, _ = alone
    spec = spec_in(tmp_path, no_dropout_bert, devices=2)
    if first == "group":
        stopped = train_in_group(spec, ranks=2, cancel_after_steps=9)
        assert stopped["cancelled"]
    else:
        with pytest.raises(Cancelled):
            run_training(spec, MemoryReporter(cancel_after_steps=9))
    assert checkpoint.load(checkpoint.path_in(spec.output_dir)) is not None

    if first == "group":
        resumed = MemoryReporter()
        metrics = run_training(spec, resumed).metrics
        logs = resumed.logs
    else:
        outcome = train_in_group(spec, ranks=2)
        metrics, logs = outcome["metrics"], outcome["logs"]
    assert any("resumed from a checkpoint" in line for line in logs), logs
    for key in ("val_loss", "test_loss", "test_accuracy"):
        assert metrics[key] == pytest.approx(expected[key], abs=TOLERANCE), key
    assert not checkpoint.path_in(spec.output_dir).exists()


def test_lp_ft_probe_is_fitted_once_and_shared(tmp_path, no_dropout_bert):
    """lp_ft in a group: rank 0 fits the probe; every rank fine-tunes from its weights."""
    spec = spec_in(tmp_path / "one", no_dropout_bert, "lp_ft", epochs=1)
    expected = run_training(spec, MemoryReporter()).metrics
    group = train_in_group(replace(spec, output_dir=tmp_path / "two"), ranks=2)["metrics"]
    for key in ("probe_val_macro_f1", "val_loss", "test_loss"):
        assert group[key] == pytest.approx(expected[key], abs=TOLERANCE), key


@pytest.mark.parametrize("task", ["token_classification", "generation"])
def test_other_tasks_train_in_a_group(tmp_path, tmp_path_factory, no_dropout_bert, task):
    """Entity tagging (per-token outputs gathered from both ranks, windows of sentences) and
    generation (LoRA on a causal LM, samples answered by rank 0) under DDP. Their losses
    average over tokens, which the ranks' row shares weight only roughly: close, not equal."""
    from tests.chat_data import make_tiny_causal_lm
    from tests.test_generation_training import spec_for as chat_spec
    from tests.test_token_training import spec_for as token_spec
    from tests.test_token_training import tagged_sentences

    if task == "token_classification":
        examples = tagged_sentences(60)
        spec = token_spec(
            tmp_path, no_dropout_bert, "finetune_lora", examples, epochs=1, lora_dropout=0.0
        )
    else:
        model = make_tiny_causal_lm(tmp_path_factory.mktemp("lm"))
        spec = chat_spec(tmp_path, model, "finetune_lora", epochs=1, lora_dropout=0.0)
    spec = replace(spec, torch_threads=1)
    expected = run_training(spec, MemoryReporter()).metrics
    grouped = replace(spec, output_dir=tmp_path / "group", params=replace(spec.params, devices=2))
    got = train_in_group(grouped, ranks=2)["metrics"]
    assert got["test_loss"] == pytest.approx(expected["test_loss"], abs=0.05)
    assert (tmp_path / "group" / "export.zip").is_file()
