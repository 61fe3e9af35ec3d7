"""The packaged SmolLM2-135M-Instruct, really tuned: a LoRA job on a small rewrite task
("Remind me to buy milk on Monday." → "MONDAY: buy milk") whose validation loss falls and
whose tuned answers match the references where the base model's do not.

The model is the one the catalogue offers: the 4-bit GGUF converted once into a safetensors
folder (gguf_import.py), here into this test session's folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from tests.chat_data import reminder_conversations
from worker.training.causal_lm import CausalLM
from worker.training.gguf_import import import_gguf, packaged_smollm2
from worker.training.reporting import MemoryReporter
from worker.training.run import run_training
from worker.training.spec import ChatExamples, TrainParams, TrainSpec
from worker.training.text_metrics import generation_scores

SYSTEM = "Rewrite the request as DAY: task."
TRAIN, VALIDATION, TEST = 24, 8, 8


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder, name = packaged_smollm2()
    return str(import_gguf(folder, name, tmp_path_factory.mktemp("models") / "smollm2"))


def test_lora_teaches_smollm2_a_format_its_base_model_does_not_follow(
    smollm2: str, tmp_path: Path
) -> None:
    rows = [
        [{"role": "system", "content": SYSTEM}, *c]
        for c in reminder_conversations(TRAIN + VALIDATION + TEST, seed=1)
    ]
    spec = TrainSpec(
        job_id=1,
        model_id="smollm2-135m-instruct",
        model_path=smollm2,
        strategy="finetune_lora",
        label_names=[],
        examples=ChatExamples(rows),
        train_idx=list(range(TRAIN)),
        validation_idx=list(range(TRAIN, TRAIN + VALIDATION)),
        test_idx=list(range(TRAIN + VALIDATION, TRAIN + VALIDATION + TEST)),
        dataset_name="reminders",
        dataset_fingerprint="reminders-smollm2",
        params=TrainParams(epochs=3, batch_size=8, max_length=64, learning_rate=2e-3),
        output_dir=tmp_path / "job",
        cache_dir=tmp_path / "cache",
        torch_threads=2,
        task="generation",
    )
    # The base model's validation loss, measured as the job measures it.
    base = CausalLM.load(spec, torch.device("cpu"))
    base.model.eval()
    with torch.inference_mode():
        rows_batch = base.rows(augment_idx=frozenset()).batch(np.array(spec.validation_idx))
        out = base.logits(base.model, rows_batch)
    base_loss = float(out[:, 0].sum() / out[:, 1].sum())
    del base

    reporter = MemoryReporter()
    m = run_training(spec, reporter).metrics
    print({k: v for k, v in m.items() if isinstance(v, int | float)})  # the note's figures

    losses = [v for _, v in reporter.series("val_loss")]
    assert m["val_loss"] < 0.3 * base_loss, (base_loss, losses)
    book = json.loads((spec.output_dir / "samples.json").read_text())
    references = [r["reference"] for r in book["rows"]]
    tuned = book["epochs"][str(m["best_epoch"])]
    before = generation_scores(book["base"], references)
    after = generation_scores(tuned, references)
    assert after["exact_match"] > before["exact_match"], (book["base"], tuned)
    assert m["test_exact_match"] >= 0.5 and m["test_rouge_l"] > 0.8, m["test_answers"]
