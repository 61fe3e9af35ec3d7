"""Generation through worker.training on a tiny causal language model built from a config:
real steps on the CPU, no mocks. What the loss learns (answers only), what each strategy
trains, the samples written as the job goes, and an export that loads with transformers'
own classes and answers as the job did."""

from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

from tests.chat_data import make_tiny_causal_lm, packaged_tokenizer, reminder_conversations
from worker.training.causal_lm import CausalLM
from worker.training.chat_tokens import prepared, tokenize_chats
from worker.training.generation_samples import answer_budget
from worker.training.reporting import Cancelled, MemoryReporter
from worker.training.run import run_training
from worker.training.spec import ChatExamples, TrainParams, TrainSpec

ROWS = reminder_conversations(120, seed=2)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm"))


def spec_for(tmp: Path, model: str, strategy: str, **params) -> TrainSpec:
    return TrainSpec(
        job_id=3,
        model_id="tiny-lm",
        model_path=model,
        strategy=strategy,
        label_names=[],
        examples=ChatExamples(ROWS),
        train_idx=list(range(80)),
        validation_idx=list(range(80, 100)),
        test_idx=list(range(100, 120)),
        dataset_name="reminders",
        dataset_fingerprint="reminders-120",
        params=TrainParams(
            **{"epochs": 3, "batch_size": 8, "max_length": 64, "learning_rate": 1e-2, **params}
        ),
        output_dir=tmp / f"job-{strategy}",
        cache_dir=tmp / "cache",
        torch_threads=2,
        task="generation",
    )


def test_only_the_answers_are_learned() -> None:
    tokenizer = prepared(packaged_tokenizer())
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Remind me to buy milk on Monday."},
        {"role": "assistant", "content": "MONDAY: buy milk"},
        {"role": "user", "content": "And the dog on Friday?"},
        {"role": "assistant", "content": "FRIDAY: walk the dog"},
    ]
    chats = tokenize_chats(tokenizer, [conversation], max_length=256)
    n = int(chats.lengths[0])
    ids, learn = chats.arrays["input_ids"][0, :n], chats.arrays["learn"][0, :n]
    # Both answers and their end markers, nothing of the system prompt, prompts or markup.
    learned = tokenizer.decode(ids[learn == 1])
    assert learned == "MONDAY: buy milk<|im_end|>\nFRIDAY: walk the dog<|im_end|>\n"
    assert "Be brief" not in learned and "Remind" not in learned

    cut = tokenize_chats(tokenizer, [conversation], max_length=30)
    assert cut.lengths[0] == 30 and cut.full_lengths[0] == n


def test_full_fine_tuning_learns_and_the_export_answers_as_the_job_did(
    tiny_lm: str, tmp_path: Path
) -> None:
    spec = spec_for(tmp_path, tiny_lm, "finetune_full")
    reporter = MemoryReporter()
    m = run_training(spec, reporter).metrics

    # From chance (ln of the vocabulary) to a fraction of it: the answers' format is learned.
    chance = math.log(49152)
    assert m["val_loss"] < 0.6 * chance, m["val_loss"]
    assert m["headline_metric"] == "test_loss" and not m["headline_higher_is_better"]
    assert m["test_perplexity"] == pytest.approx(math.exp(m["test_loss"]))
    for key in ("test_exact_match", "test_rouge_l", "test_chrf"):
        assert 0.0 <= m[key] <= 1.0
    assert m["train_tokens_per_second"] > 0 and m["generation_rows"] == 20
    assert len(reporter.series("val_perplexity")) == 3
    assert len(reporter.series("val_sample_rouge_l")) == 3

    samples = json.loads((spec.output_dir / "samples.json").read_text())
    assert [r["index"] for r in samples["rows"]] == spec.validation_idx[:4]
    assert len(samples["base"]) == 4 and sorted(samples["epochs"]) == ["1", "2", "3"]

    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(spec.output_dir / "export.zip") as archive:
        archive.extractall(folder)
    names = {p.name for p in (folder / "model").iterdir()}
    assert {"model.safetensors", "generation_config.json", "tokenizer.json"} <= names
    card = (folder / "README.md").read_text()
    assert "## Before and after" in card and "AutoModelForCausalLM" in card

    # The downloaded folder, loaded by transformers alone, greedily writes the answer the
    # job scored for a test prompt.
    model = AutoModelForCausalLM.from_pretrained(folder / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(folder / "model")
    shown = m["test_answers"][0]
    conversation = ROWS[shown["index"]][:-1]
    chat = pipeline("text-generation", model=model, tokenizer=tokenizer)
    budget = answer_budget(tokenizer, [ROWS[i][-1]["content"] for i in spec.test_idx])
    out = chat(conversation, max_new_tokens=budget)
    assert out[0]["generated_text"][-1]["content"].strip() == shown["answer"]


def test_lora_exports_merged_weights_and_the_peft_adapter(tiny_lm: str, tmp_path: Path) -> None:
    from peft import PeftModel

    spec = spec_for(tmp_path, tiny_lm, "finetune_lora", epochs=1)
    m = run_training(spec, MemoryReporter()).metrics
    assert m["trainable_params"] < m["total_params"] / 10
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(spec.output_dir / "export.zip") as archive:
        archive.extractall(folder)
    config = json.loads((folder / "adapter" / "adapter_config.json").read_text())
    assert set(config["target_modules"]) == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
    }  # fmt: skip

    merged = AutoModelForCausalLM.from_pretrained(folder / "model").eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_lm)
    adapted = PeftModel.from_pretrained(base, folder / "adapter").eval()
    ids = torch.tensor([[1, 200, 300, 400, 500]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapted(ids).logits, atol=1e-4)


def test_top_k_trains_the_top_blocks_and_final_norm_only(tiny_lm: str, tmp_path: Path) -> None:
    spec = spec_for(tmp_path, tiny_lm, "transfer_top_k", epochs=1, top_k=1)
    clf = CausalLM.load(spec, torch.device("cpu"))
    blocks = clf.blocks("transfer_top_k")
    assert blocks[-1] == ("model.layers.1", "model.norm") and blocks[0] == ("model.layers.0",)
    m = run_training(spec, MemoryReporter()).metrics
    layer = sum(p.numel() for p in clf.model.model.layers[1].parameters())
    assert m["trainable_params"] == layer + clf.model.model.norm.weight.numel()


def test_gradient_accumulation_makes_fewer_larger_steps(tiny_lm: str, tmp_path: Path) -> None:
    reporter = MemoryReporter()
    spec = spec_for(tmp_path, tiny_lm, "finetune_full", epochs=1, gradient_accumulation=3)
    run_training(spec, reporter)
    # 80 rows in batches of 8: 10 batches, steps of 3 + 3 + 3 + 1.
    assert reporter.training_steps == 4


def test_a_cancelled_job_resumes_where_it_stopped(tiny_lm: str, tmp_path: Path) -> None:
    whole = run_training(spec_for(tmp_path / "a", tiny_lm, "finetune_full"), MemoryReporter())

    spec = spec_for(tmp_path / "b", tiny_lm, "finetune_full")
    stopping = MemoryReporter(cancel_after_steps=15)  # in epoch 2, after its checkpoint
    with pytest.raises(Cancelled):
        run_training(spec, stopping)
    resumed = run_training(spec, MemoryReporter())
    assert resumed.metrics["val_loss"] == pytest.approx(whole.metrics["val_loss"], rel=1e-5)
    samples = json.loads((spec.output_dir / "samples.json").read_text())
    assert sorted(samples["epochs"]) == ["1", "2", "3"]
