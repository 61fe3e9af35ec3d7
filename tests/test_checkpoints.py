"""Checkpoints and resume, in the training code itself: a run stopped mid-way and run again
continues from its last checkpoint and ends exactly where an uninterrupted run ends; a
process killed while writing a checkpoint leaves the previous one in force."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.factories import make_tiny_bert
from tests.image_factories import COLOURS, colour_image, make_tiny_image_model
from tests.test_training_images import image_spec
from tests.test_training_text import make_spec, synthetic_examples
from worker.training import checkpoint
from worker.training.reporting import Cancelled, MemoryReporter
from worker.training.run import run_training
from worker.training.spec import ImageExamples, TrainSpec


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def interrupted_then_resumed(spec: TrainSpec, stop_after_steps: int):
    """Run until the reporter stops it, then run the same spec again (as a re-queued job
    would); returns the first reporter, the second and the second run's result."""
    first = MemoryReporter(cancel_after_steps=stop_after_steps)
    with pytest.raises(Cancelled):
        run_training(spec, first)
    assert checkpoint.load(checkpoint.path_in(spec.output_dir)) is not None
    second = MemoryReporter()
    second.metric_events = list(first.metric_events)  # the chart as the lost run left it
    return first, second, run_training(spec, second)


@pytest.mark.parametrize("strategy", ["finetune_full", "lp_ft"])
def test_a_resumed_text_run_ends_where_an_uninterrupted_one_does(tmp_path, tiny_bert, strategy):
    examples = synthetic_examples(90, seed=4)
    params = {"epochs": 3, "learning_rate": 1e-3, "batch_size": 8}
    whole = MemoryReporter()
    expected = run_training(
        make_spec(tmp_path / "a", tiny_bert, strategy, examples, **params), whole
    )

    spec = make_spec(tmp_path / "b", tiny_bert, strategy, examples, **params)
    spec = replace(spec, checkpoint_every_seconds=0.0)
    # 17 training steps in: mid-epoch 2 (of 3) of lp_ft's fine-tuning and of full
    first, second, result = interrupted_then_resumed(spec, stop_after_steps=17)
    assert any("resumed from a checkpoint" in line for line in second.logs)
    assert result.metrics["test_accuracy"] == expected.metrics["test_accuracy"]
    assert result.metrics["val_loss"] == pytest.approx(expected.metrics["val_loss"], rel=1e-5)
    if strategy == "lp_ft":  # the fitted probe's path survives the restart
        assert result.metrics["probe_search"] == expected.metrics["probe_search"]
    # The chart: every series point once, the same as the uninterrupted run's.
    for name in ("train_loss", "val_macro_f1"):
        got, want = second.series(name), whole.series(name)
        assert [s for s, _ in got] == [s for s, _ in want], name
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-4), name
    assert not checkpoint.path_in(spec.output_dir).exists()  # published: removed


def test_a_resumed_image_run_repeats_its_augmentations(tmp_path, tmp_path_factory):
    model = make_tiny_image_model(tmp_path_factory.mktemp("vit") / "vit", "vit")
    root = tmp_path / "images"
    labels = list(COLOURS)
    paths, ids = [], []
    for i in range(48):
        path = f"{labels[i % 3]}/{i}.png"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(colour_image(labels[i % 3], i))
        paths.append(path)
        ids.append(i % 3)
    examples = ImageExamples(root=root, paths=paths, labels=ids)
    params = {"epochs": 2, "batch_size": 4, "learning_rate": 3e-3, "augment": True}
    expected = run_training(
        image_spec(tmp_path / "a", model, "finetune_full", examples, **params), MemoryReporter()
    )
    spec = image_spec(tmp_path / "b", model, "finetune_full", examples, **params)
    spec = replace(spec, checkpoint_every_seconds=0.0)
    _, _, result = interrupted_then_resumed(spec, stop_after_steps=11)
    assert result.metrics["val_loss"] == pytest.approx(expected.metrics["val_loss"], rel=1e-5)


def test_a_foreign_or_broken_checkpoint_is_ignored(tmp_path, tiny_bert):
    spec = make_spec(tmp_path, tiny_bert, "finetune_full", synthetic_examples(60), epochs=1)
    path = checkpoint.path_in(spec.output_dir)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half a checkpoint")
    assert checkpoint.load(path) is None
    reporter = MemoryReporter()
    run_training(spec, reporter)
    assert not any("resumed" in line for line in reporter.logs)


KILLED_WRITER = """
import sys, torch
sys.path.insert(0, {root!r})
from pathlib import Path
from worker.training import checkpoint
checkpoint.save(Path({path!r}), {{"meta": {{"n": 2}}, "big": torch.ones(150_000_000)}})
"""


def test_killed_while_writing_a_checkpoint_the_previous_one_is_used(tmp_path):
    path = tmp_path / "job" / checkpoint.NAME
    checkpoint.save(path, {"meta": {"n": 1}, "weights": torch.arange(5.0)})
    code = KILLED_WRITER.format(root=str(Path(__file__).resolve().parents[1]), path=str(path))
    writer = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while not list(path.parent.glob(checkpoint.NAME + ".*.tmp")):
            assert writer.poll() is None, "the writer finished before it could be killed"
            assert time.monotonic() < deadline, "the writer never started writing"
            time.sleep(0.005)
        os.kill(writer.pid, signal.SIGKILL)  # mid-write: the temporary file is half written
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.returncode == -signal.SIGKILL
    state = checkpoint.load(path)
    assert state is not None and state["meta"] == {"n": 1}
    assert torch.equal(state["weights"], torch.arange(5.0))
    checkpoint.remove(path.parent)
    assert list(path.parent.iterdir()) == []
