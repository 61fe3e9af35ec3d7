"""Image classification in worker/training, without a server: every strategy on tiny Hugging
Face image models built on the spot, the head/feature split of each known architecture,
augmentation, and exports that load without Tuneboard."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.image_factories import COLOURS, colour_image, make_tiny_image_model
from worker.training.classifier import count_params, load_classifier
from worker.training.image_data import ImageRows
from worker.training.image_model import hub_preprocessing
from worker.training.predictor import load_predictor
from worker.training.reporting import MemoryReporter
from worker.training.run import run_training
from worker.training.spec import STRATEGIES, ImageExamples, TrainParams, TrainSpec
from worker.training.strategies import PREPARE

LABELS = list(COLOURS)


@pytest.fixture(scope="module")
def colour_images(tmp_path_factory) -> ImageExamples:
    root = tmp_path_factory.mktemp("colours")
    paths, labels = [], []
    for i in range(90):
        label = LABELS[i % 3]
        path = f"train/{label}/{i:03d}.png"
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(colour_image(label, i))
        paths.append(path)
        labels.append(i % 3)
    return ImageExamples(root=root, paths=paths, labels=labels)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("image-models")
    return {
        kind: make_tiny_image_model(root / kind, kind) for kind in ("vit", "convnext", "resnet")
    }


def image_spec(tmp: Path, model_path: str, strategy: str, examples: ImageExamples, **params):
    n = len(examples)
    return TrainSpec(
        job_id=1,
        model_id="tiny-image",
        model_path=model_path,
        strategy=strategy,
        label_names=LABELS,
        examples=examples,
        train_idx=list(range(0, int(n * 0.6))),
        validation_idx=list(range(int(n * 0.6), int(n * 0.8))),
        test_idx=list(range(int(n * 0.8), n)),
        dataset_name="colours",
        dataset_fingerprint=f"colours-{n}",
        params=TrainParams(**{"epochs": 3, "batch_size": 16, **params}),
        output_dir=tmp / f"job-{strategy}",
        cache_dir=tmp / "feature-cache",
        torch_threads=2,
    )


@pytest.mark.parametrize("kind", ["vit", "convnext", "resnet"])
def test_head_on_features_equals_the_whole_model(tmp_path, tiny_models, colour_images, kind):
    """Frozen features are exactly what each architecture's classifier reads."""
    spec = image_spec(tmp_path, tiny_models[kind], "transfer_frozen", colour_images)
    clf = load_classifier(spec, torch.device("cpu"))
    clf.model.eval()
    batch = clf.rows(augment_idx=frozenset()).batch(np.arange(6))
    with torch.inference_mode():
        whole = clf.logits(clf.model, batch)
        split = clf.head_logits(clf.features(batch))
    torch.testing.assert_close(split, whole)
    assert clf.feature_width == clf.features(batch).shape[1]


def test_preprocessing_comes_from_the_model_folder(tiny_models):
    vit = hub_preprocessing(Path(tiny_models["vit"]))
    assert vit["size"] == vit["resize"] == 32 and vit["mode"] == "squash"
    convnext = hub_preprocessing(Path(tiny_models["convnext"]))
    assert convnext["size"] == 32 and convnext["mode"] == "crop"
    with pytest.raises(ValueError, match="no preprocessor_config.json"):
        hub_preprocessing(Path(tiny_models["vit"]).parent)


def test_frozen_features_never_augment(tmp_path, tiny_models, colour_images):
    spec = image_spec(tmp_path, tiny_models["vit"], "transfer_frozen", colour_images, augment=True)
    reporter = MemoryReporter()
    clf = load_classifier(spec, torch.device("cpu"))
    PREPARE["transfer_frozen"](spec, clf, torch.device("cpu"), reporter)
    assert any("augmentation is off for frozen features" in line for line in reporter.logs)


def test_augmentation_changes_training_rows_only(colour_images):
    config = {"size": 24, "resize": 28, "mean": [0.5] * 3, "std": [0.5] * 3}
    rows = ImageRows(colour_images.root, colour_images.paths, config, frozenset({0, 1}), seed=1)
    first, second = (
        rows.batch(np.arange(4))["pixel_values"],
        rows.batch(np.arange(4))["pixel_values"],
    )
    assert first.shape == (4, 3, 24, 24)
    assert not torch.equal(first[:2], second[:2])  # a fresh crop each time
    torch.testing.assert_close(first[2:], second[2:])  # evaluation rows: deterministic
    again = ImageRows(colour_images.root, colour_images.paths, config, frozenset({0, 1}), seed=1)
    torch.testing.assert_close(again.batch(np.arange(4))["pixel_values"], first)  # seeded


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_trains_a_tiny_vit_and_exports_a_pipeline_folder(
    tmp_path, tiny_models, colour_images, strategy
):
    rate = {"transfer_frozen": None, "finetune_lora": 1e-2}.get(strategy, 3e-3)
    spec = image_spec(
        tmp_path, tiny_models["vit"], strategy, colour_images, epochs=4, learning_rate=rate
    )
    reporter = MemoryReporter()
    result = run_training(spec, reporter)
    m = result.metrics
    assert m["test_accuracy"] >= 0.8, (strategy, m)
    if strategy == "transfer_frozen":
        assert m["feature_cache_hit"] is False
    rows = json.loads((spec.output_dir / "validation_predictions.json").read_text())
    assert rows[0]["text"] == colour_images.paths[rows[0]["index"]]

    with zipfile.ZipFile(result.export_path) as archive:
        archive.extractall(tmp_path / "export")
        names = set(archive.namelist())
    assert {"model/config.json", "model/model.safetensors", "model/preprocessor_config.json"} <= (
        names
    )
    assert 'pipeline("image-classification"' in (tmp_path / "export" / "README.md").read_text()
    # The export answers through the transformers classes alone, as the model card says.
    from transformers import AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(tmp_path / "export" / "model")
    assert model.config.id2label == dict(enumerate(LABELS))
    predictor = load_predictor(tmp_path / "export" / "model")
    images = [Image.open(colour_images.root / colour_images.paths[i]) for i in spec.test_idx]
    predicted = [LABELS[int(np.argmax(p))] for p in predictor.images(images)]
    truth = [LABELS[colour_images.labels[i]] for i in spec.test_idx]
    assert np.mean([p == t for p, t in zip(predicted, truth, strict=True)]) >= 0.8


def test_top_k_on_an_image_model_trains_its_top_stage_and_head(
    tmp_path, tiny_models, colour_images
):
    spec = image_spec(tmp_path, tiny_models["convnext"], "transfer_top_k", colour_images, top_k=1)
    clf = load_classifier(spec, torch.device("cpu"))
    stage = PREPARE["transfer_top_k"](spec, clf, torch.device("cpu"), MemoryReporter())
    trained = {n for n, p in stage.trained.named_parameters() if p.requires_grad}
    assert stage.info == {"top_k": 1, "blocks": 2}
    assert {n.split(".stages.")[1][0] for n in trained if ".stages." in n} == {"1"}
    assert {"classifier.weight", "classifier.bias"} <= trained
    assert not any(n.startswith("convnext.embeddings") for n in trained)
    assert count_params(stage.trained)[0] < count_params(stage.trained)[1]


def test_lora_is_refused_for_resnet_with_the_reason(tmp_path, tiny_models, colour_images):
    spec = image_spec(tmp_path, tiny_models["resnet"], "finetune_lora", colour_images)
    with pytest.raises(ValueError, match="LoRA is not available for resnet"):
        run_training(spec, MemoryReporter())


def test_batch_norms_keep_their_pretrained_statistics(tmp_path, tiny_models, colour_images):
    """Even when every weight trains, running statistics stay as loaded (loop.py says why)."""
    spec = image_spec(tmp_path, tiny_models["resnet"], "finetune_full", colour_images, epochs=1)
    clf = load_classifier(spec, torch.device("cpu"))
    before = {n: b.clone() for n, b in clf.model.named_buffers() if "running_" in n}
    assert before
    stage = PREPARE["finetune_full"](spec, clf, torch.device("cpu"), MemoryReporter())
    from worker.training.loop import fit

    fit(
        stage.trained,
        stage.forward,
        stage.source,
        spec.job_task(),
        train_idx=spec.train_idx,
        validation_idx=spec.validation_idx,
        params=replace(spec.params, epochs=1),
        learning_rate=1e-3,
        device=torch.device("cpu"),
        reporter=MemoryReporter(),
    )
    for name, buffer in clf.model.named_buffers():
        if name in before:
            torch.testing.assert_close(buffer, before[name], msg=name)
