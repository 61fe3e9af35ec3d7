"""The five strategies on real tiny models: exactly which parameters train, that each one
trains, tests and exports a checkpoint plain transformers loads (LoRA's merged, without
PEFT), early stopping, LP-FT's two stages on one axis, the validation predictions file and
the quick probe. No mocks; every run is real training steps on the CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import replace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
)

from tests.factories import LABELS, make_tiny_bert, tiny_classifier
from tests.test_training_text import (
    BERT_HEAD_PARAMS,
    METRIC_KEYS,
    make_spec,
    reloaded_logits,
    synthetic_examples,
    unzip,
)
from worker.training.classifier import count_params, resolve_top_k
from worker.training.lora import add_lora, merged
from worker.training.probe import probe_score
from worker.training.reporting import MemoryReporter
from worker.training.run import run_training
from worker.training.spec import STRATEGIES, TextExamples, TrainParams
from worker.training.strategies import PREPARE, all_layers, head_on_features
from worker.training.tasks.classification import full_report
from worker.training.text_model import TextClassifier, load_text_model

BERT_BLOCK = [
    "attention.self.query.weight", "attention.self.query.bias",
    "attention.self.key.weight", "attention.self.key.bias",
    "attention.self.value.weight", "attention.self.value.bias",
    "attention.output.dense.weight", "attention.output.dense.bias",
    "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
    "intermediate.dense.weight", "intermediate.dense.bias",
    "output.dense.weight", "output.dense.bias",
    "output.LayerNorm.weight", "output.LayerNorm.bias",
]  # fmt: skip
LORA_BERT = {
    f"base_model.model.bert.encoder.layer.{i}.attention.self.{proj}.lora_{ab}.default.weight"
    for i in (0, 1)
    for proj in ("query", "value")
    for ab in ("A", "B")
} | {
    "base_model.model.bert.pooler.modules_to_save.default.dense.weight",
    "base_model.model.bert.pooler.modules_to_save.default.dense.bias",
    "base_model.model.classifier.modules_to_save.default.weight",
    "base_model.model.classifier.modules_to_save.default.bias",
}
NEW_METRIC_KEYS = {"epochs_run", "stopped_early", "val_confusion_matrix"}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def trainable_names(module: torch.nn.Module) -> set[str]:
    return {n for n, p in module.named_parameters() if p.requires_grad}


def loaded(model_path: str, spec) -> TextClassifier:
    tokenizer, model = load_text_model(model_path, LABELS)
    return TextClassifier(tokenizer, model, spec.examples, spec.params.max_length)


class _NoRows(TextClassifier):
    def rows(self, *, augment_idx):  # noqa: ANN001, ANN202 - the stage's rows are not used
        return None


def untokenized(model: torch.nn.Module) -> TextClassifier:
    """A classifier around a bare model, for tests that never use its rows."""
    return _NoRows(None, model, TextExamples([], None, []), max_length=8)


def val_series(reporter: MemoryReporter) -> list[tuple[float, float]]:
    return [(e, v["val_macro_f1"]) for _, e, v in reporter.metric_events if "val_macro_f1" in v]


# ---------------------------------------------------------------- what trains, exactly


def test_each_strategy_trains_exactly_its_parameters(tmp_path, tiny_bert):
    spec = make_spec(tmp_path, tiny_bert, "transfer_frozen", synthetic_examples(60))
    device, reporter = torch.device("cpu"), MemoryReporter()
    _, reference = load_text_model(tiny_bert, LABELS)
    everything = {n for n, _ in reference.named_parameters()}
    top_block = {f"bert.encoder.layer.1.{name}" for name in BERT_BLOCK}
    expected = {
        "transfer_frozen": BERT_HEAD_PARAMS,
        "transfer_top_k": top_block | BERT_HEAD_PARAMS,  # default k for 2 blocks: 1
        "finetune_full": everything,
        "finetune_lora": LORA_BERT,
    }
    for strategy, names in expected.items():
        clf = loaded(tiny_bert, spec)
        stage = PREPARE[strategy](replace(spec, strategy=strategy), clf, device, reporter)
        assert trainable_names(stage.trained) == names, strategy

    # top_k=2 on two blocks: every block, but still not the embeddings.
    top_2 = replace(spec, strategy="transfer_top_k", params=replace(spec.params, top_k=2))
    stage = PREPARE["transfer_top_k"](top_2, loaded(tiny_bert, spec), device, reporter)
    embeddings = {n for n in everything if n.startswith("bert.embeddings.")}
    assert len(embeddings) == 5 and trainable_names(stage.trained) == everything - embeddings
    assert stage.info == {"top_k": 2, "blocks": 2}

    # lp_ft: transfer_frozen's head first, then everything, on the same model.
    clf = loaded(tiny_bert, spec)
    lp_ft = replace(spec, strategy="lp_ft")
    assert trainable_names(head_on_features(lp_ft, clf, device, reporter).trained) == (
        BERT_HEAD_PARAMS
    )
    assert trainable_names(all_layers(lp_ft, clf, device, reporter).trained) == everything
    assert set(PREPARE) | {"lp_ft"} == set(STRATEGIES)


OTHER_TOP_K = {
    "distilbert": (
        "distilbert.transformer.layer.1.",
        {"pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"},
    ),
    "roberta": (
        "roberta.encoder.layer.1.",
        {
            "classifier.dense.weight", "classifier.dense.bias",
            "classifier.out_proj.weight", "classifier.out_proj.bias",
        },
    ),
}  # fmt: skip


@pytest.mark.parametrize("arch", ["distilbert", "roberta"])
def test_top_k_and_lora_know_distilbert_and_roberta(tmp_path, arch):
    spec = make_spec(tmp_path, "unused", "transfer_top_k", synthetic_examples(30))
    model = tiny_classifier(arch, layers=2)
    block, head = OTHER_TOP_K[arch]
    PREPARE["transfer_top_k"](spec, untokenized(model), torch.device("cpu"), MemoryReporter())
    names = trainable_names(model)
    assert {n for n in names if not n.startswith(block)} == head
    assert len(names - head) == len([n for n, _ in model.named_parameters() if block in n]) > 0

    clf = untokenized(tiny_classifier(arch, layers=2))
    peft_model = add_lora(clf, TrainParams(lora_rank=2), "finetune_lora")
    lora = {n for n in trainable_names(peft_model) if "lora_" in n}
    projections = ("q_lin", "v_lin") if arch == "distilbert" else ("query", "value")
    assert {n.split(".lora_")[0].rsplit(".", 1)[1] for n in lora} == set(projections)
    assert len(lora) == 2 * 2 * 2  # 2 blocks × 2 projections × (A, B)


def test_top_k_default_and_too_many_blocks(tmp_path, tiny_bert):
    assert [resolve_top_k(None, n) for n in (1, 2, 6, 12, 24)] == [1, 1, 2, 4, 8]
    assert resolve_top_k(2, 2) == 2
    spec = make_spec(tmp_path, tiny_bert, "transfer_top_k", synthetic_examples(60), top_k=3)
    with pytest.raises(ValueError, match="top_k is 3 but the model has only 2 blocks"):
        run_training(spec, MemoryReporter())


def test_unknown_architecture_is_refused_by_top_k_and_lora(tmp_path):
    gpt2 = GPT2ForSequenceClassification(
        GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, num_labels=2)
    )
    spec = make_spec(tmp_path, "unused", "transfer_top_k", synthetic_examples(30))
    with pytest.raises(ValueError, match="transfer_top_k does not know .* 'gpt2'"):
        PREPARE["transfer_top_k"](spec, untokenized(gpt2), torch.device("cpu"), MemoryReporter())
    with pytest.raises(ValueError, match="finetune_lora does not know .* 'gpt2'"):
        add_lora(untokenized(gpt2), TrainParams(), "finetune_lora")


@pytest.mark.parametrize(
    "bad",
    [{"patience": 0}, {"top_k": 0}, {"lora_rank": 0}, {"lora_dropout": 1.0}],
)
def test_bad_strategy_settings_fail_before_loading(tmp_path, bad):
    spec = make_spec(tmp_path, str(tmp_path / "no-model"), "lp_ft", synthetic_examples(30), **bad)
    with pytest.raises(ValueError, match=next(iter(bad))):
        run_training(spec, MemoryReporter())


def test_lora_target_modules_from_json_become_a_tuple():
    assert TrainParams(lora_target_modules=["query"]).lora_target_modules == ("query",)  # type: ignore[arg-type]


# ---------------------------------------------------------------- LoRA merge


def test_merged_lora_export_reproduces_the_peft_model(tmp_path):
    """With non-zero adapters (B starts at zero, which would make merging trivial)."""
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        vocab_size=50, max_position_embeddings=40, num_labels=3,
    )  # fmt: skip
    model = BertForSequenceClassification(config)
    peft_model = add_lora(untokenized(model), TrainParams(lora_rank=4), "finetune_lora")
    with torch.no_grad():
        for p in peft_model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.5)
    inputs = {"input_ids": torch.randint(3, 50, (4, 10)), "attention_mask": torch.ones(4, 10)}
    inputs["attention_mask"][2, 6:] = 0
    with torch.inference_mode():
        expected = peft_model.eval()(**inputs).logits
    merged(peft_model).save_pretrained(tmp_path / "merged")
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(**inputs).logits, expected, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- every strategy end to end


def check_validation_predictions(spec, metrics) -> list[dict]:
    rows = json.loads((spec.output_dir / "validation_predictions.json").read_text())
    assert [r["index"] for r in rows] == spec.validation_idx
    assert set(rows[0]) == {"index", "text", "true", "predicted", "confidence"}
    matrix = np.zeros((len(LABELS), len(LABELS)), dtype=int)
    for r in rows:
        assert r["text"] == spec.examples.texts[r["index"]][:500]
        assert r["true"] == LABELS[spec.examples.labels[r["index"]]]
        assert 1 / len(LABELS) <= r["confidence"] <= 1
        matrix[LABELS.index(r["true"]), LABELS.index(r["predicted"])] += 1
    assert matrix.tolist() == metrics["val_confusion_matrix"]
    # The cells the job page opens: each off-diagonal count is that many listed mistakes.
    mistakes = Counter((r["true"], r["predicted"]) for r in rows if r["true"] != r["predicted"])
    for (true, predicted), n in mistakes.items():
        assert metrics["val_confusion_matrix"][LABELS.index(true)][LABELS.index(predicted)] == n
    assert sum(np.diag(matrix)) / len(rows) == pytest.approx(metrics["val_accuracy"])
    return rows


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_trains_tests_and_exports_a_plain_checkpoint(tmp_path, tiny_bert, strategy):
    examples = synthetic_examples(150, seed=3)
    epochs = {"lp_ft": 2}.get(strategy, 3)
    # Rates for a 32-wide model and a few dozen steps; the defaults suit real models.
    rate = {"transfer_frozen": None, "finetune_lora": 5e-3}.get(strategy, 1e-3)
    spec = make_spec(tmp_path, tiny_bert, strategy, examples, epochs=epochs, learning_rate=rate)
    reporter = MemoryReporter()
    m = run_training(spec, reporter).metrics

    assert m.keys() >= METRIC_KEYS | NEW_METRIC_KEYS
    assert json.loads(json.dumps(m)) == m
    assert m["stopped_early"] is False
    if strategy == "transfer_frozen":  # one point per L2 strength tried (head_fit.py)
        assert m["epochs_run"] == len(m["head_search"]) and m["head_l2"] > 0
    else:
        assert m["epochs_run"] == epochs
    assert m["test_accuracy"] >= 0.6, m
    clf = loaded(tiny_bert, spec)
    model = clf.model
    if strategy != "lp_ft":  # lp_ft reports its second stage: everything
        stage = PREPARE[strategy](spec, clf, torch.device("cpu"), MemoryReporter())
        model = stage.trained
    assert (m["trainable_params"], m["total_params"]) == count_params(model)
    rows = check_validation_predictions(spec, m)

    # The export loads with plain transformers and predicts what the in-memory model did:
    # the same validation argmax, the same test confusion matrix and loss.
    folder = unzip(spec.output_dir / "export.zip", tmp_path / "unzipped") / "model"
    assert not (folder / "adapter_config.json").exists()
    with safe_open(folder / "model.safetensors", "pt") as weights:
        saved = set(weights.keys())
    plain = BertForSequenceClassification(BertConfig.from_pretrained(folder))
    assert saved == {n for n, _ in plain.named_parameters()}  # no lora_*, no PEFT prefixes
    val_logits = reloaded_logits(folder, spec, spec.validation_idx)
    assert [LABELS[i] for i in val_logits.argmax(1)] == [r["predicted"] for r in rows]
    test_logits = reloaded_logits(folder, spec, spec.test_idx)
    report = full_report(test_logits, np.asarray(examples.labels)[spec.test_idx], LABELS)
    assert report["confusion_matrix"] == m["confusion_matrix"]
    assert report["loss"] == pytest.approx(m["test_loss"], abs=1e-4)


def test_lora_export_loads_where_peft_cannot_be_imported(tmp_path, tiny_bert):
    spec = make_spec(tmp_path, tiny_bert, "finetune_lora", synthetic_examples(90), epochs=2)
    m = run_training(spec, MemoryReporter()).metrics
    folder = unzip(spec.output_dir / "export.zip", tmp_path / "unzipped") / "model"
    texts = [spec.examples.texts[i] for i in spec.test_idx]
    script = """
import json, sys
sys.modules["peft"] = None  # any attempt to import peft now fails
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
folder, texts = sys.argv[1], json.loads(sys.argv[2])
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
enc = tokenizer(texts, truncation=True, max_length=48, padding=True, return_tensors="pt")
with torch.inference_mode():
    print(json.dumps(model(**enc).logits.argmax(1).tolist()))
"""
    out = subprocess.run(
        [sys.executable, "-c", script, str(folder), json.dumps(texts)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    predicted = json.loads(out.stdout.strip().splitlines()[-1])
    labels = np.asarray(spec.examples.labels)[spec.test_idx]
    matrix = np.zeros((len(LABELS), len(LABELS)), dtype=int)
    np.add.at(matrix, (labels, predicted), 1)
    assert matrix.tolist() == m["confusion_matrix"]


# ---------------------------------------------------------------- early stopping


def test_early_stopping_stops_after_patience_epochs_without_gain(tmp_path, tiny_bert):
    # A vanishing learning rate: every epoch scores exactly the first one, so none improves.
    spec = make_spec(
        tmp_path, tiny_bert, "finetune_full", synthetic_examples(90), epochs=6,
        learning_rate=1e-12, patience=2,
    )  # fmt: skip
    reporter = MemoryReporter()
    m = run_training(spec, reporter).metrics
    assert (m["epochs_run"], m["stopped_early"], m["best_epoch"]) == (3, True, 1)
    assert [e for e, _ in val_series(reporter)] == [1.0, 2.0, 3.0]
    assert any("early stop" in line for line in reporter.logs)
    steps_per_epoch = -(-len(spec.train_idx) // 16)
    assert reporter.training_steps == 3 * steps_per_epoch
    # An untrained head gets many rows wrong: the file lists exactly the matrix's mistakes.
    rows = check_validation_predictions(spec, m)
    assert sum(r["true"] != r["predicted"] for r in rows) > len(rows) // 4

    # Patience that never runs out before the last epoch is not an early stop.
    again = run_training(
        replace(spec, output_dir=tmp_path / "again", params=replace(spec.params, epochs=2)),
        MemoryReporter(),
    )
    assert (again.metrics["epochs_run"], again.metrics["stopped_early"]) == (2, False)


# ---------------------------------------------------------------- LP-FT


def test_lp_ft_fits_the_frozen_head_then_fine_tunes_from_epoch_zero(tmp_path, tiny_bert):
    examples = synthetic_examples(150, seed=5)
    frozen = make_spec(tmp_path, tiny_bert, "transfer_frozen", examples)
    frozen_metrics = run_training(frozen, MemoryReporter()).metrics
    assert frozen_metrics["feature_cache_hit"] is False

    spec = make_spec(tmp_path, tiny_bert, "lp_ft", examples, epochs=3)
    reporter = MemoryReporter()
    m = run_training(spec, reporter).metrics

    assert m["feature_cache_hit"] is True  # the transfer_frozen job's features
    assert len(list(spec.cache_dir.iterdir())) == 1
    assert m["trainable_params"] == m["total_params"]
    # Stage 1 is exactly transfer_frozen's fit: the same head on the same features.
    assert m["probe_l2"] == frozen_metrics["head_l2"]
    assert m["probe_search"] == frozen_metrics["head_search"]
    assert m["probe_val_macro_f1"] == frozen_metrics["val_macro_f1"]
    # The probe is epoch 0 of one x axis; fine-tuning epochs 1..3 follow.
    series = val_series(reporter)
    assert [e for e, _ in series] == [0.0, 1.0, 2.0, 3.0] and m["epochs_run"] == 3
    assert series[0][1] == frozen_metrics["val_macro_f1"]
    steps_per_epoch = -(-len(spec.train_idx) // 16)
    progress = [(phase, s, total) for phase, s, total in reporter.progress_events]
    train_steps = [s for phase, s, _ in progress if phase == "training"]
    assert train_steps == list(range(1, 3 * steps_per_epoch + 1))
    assert {phase for phase, _, _ in progress} >= {"probe", "training"}  # features: cached
    loss_epochs = [e for _, e, v in reporter.metric_events if "train_loss" in v]
    assert loss_epochs == sorted(loss_epochs) and loss_epochs[-1] == 3.0
    stage_logs = [line for line in reporter.logs if line.startswith("stage ")]
    assert [line[:9] for line in stage_logs] == ["stage 1/2", "stage 2/2"]
    assert 0 <= m["best_epoch"] <= 3
    assert m["val_macro_f1"] >= m["probe_val_macro_f1"]  # the probe's best stands until beaten
    args = json.loads(
        (
            unzip(spec.output_dir / "export.zip", tmp_path / "x") / "model" / "training_args.json"
        ).read_text()
    )
    assert args["params"]["learning_rate"] == 5e-5
    assert args["params"]["probe_l2"] == m["probe_l2"]


# ---------------------------------------------------------------- the quick probe


def test_probe_score_fills_the_cache_the_next_job_uses(tmp_path, tiny_bert):
    examples = synthetic_examples(150, seed=7)
    spec = make_spec(tmp_path, tiny_bert, "auto", examples)
    reporter = MemoryReporter()
    score = probe_score(spec, reporter)
    assert 0.0 <= score <= 1.0 and score > 0.5
    assert reporter.metric_events == []  # the probe's curves are not the job's
    assert {phase for phase, _, _ in reporter.progress_events} == {"features", "probe"}
    assert len(list(spec.cache_dir.iterdir())) == 1
    assert not spec.output_dir.exists()

    job = run_training(replace(spec, strategy="transfer_frozen"), MemoryReporter())
    assert job.metrics["feature_cache_hit"] is True


def test_label_smoothing_softens_the_answers(tmp_path, tiny_bert):
    # Any setting in worker/training/hyperparameters.py reaches the loop: here the one added
    # to show that a setting is one field there (and one line where it is used).
    examples = synthetic_examples(120, seed=9)
    confidence = {}
    for smoothing in (0.0, 0.6):
        spec = make_spec(
            tmp_path / str(smoothing), tiny_bert, "finetune_full", examples, epochs=8,
            learning_rate=1e-2, label_smoothing=smoothing,
        )  # fmt: skip
        run_training(spec, MemoryReporter())
        rows = json.loads((spec.output_dir / "validation_predictions.json").read_text())
        confidence[smoothing] = np.mean([r["confidence"] for r in rows])
    # Measured: mean confidence 0.75 without smoothing, 0.44 with ε = 0.6.
    assert confidence[0.6] < confidence[0.0] - 0.1, confidence
