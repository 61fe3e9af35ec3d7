"""The examples and split a job trains on, rebuilt from the stored files.

The split depends only on the files, the column choice and the seed, so every job of a
comparison (same dataset, same seed) sees exactly the same train/validation/test rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config import Settings
from app.datasets import chat_datasets, tagged_datasets
from app.datasets.columns import ColumnChoice
from app.datasets.folders import dataset_folder, part_paths
from app.datasets.image_datasets import read_manifest
from app.datasets.models import Dataset, Modality
from app.datasets.service import read_parts
from app.datasets.tagged_datasets import read_sentences
from app.datasets.validation import extract_examples
from worker.training.tasks import get_task

VALIDATION_FRACTION = 0.1
TEST_FRACTION = 0.1


@dataclass
class TrainingData:
    # Text datasets: the texts. Image datasets: image paths relative to `image_root`.
    # Entity tagging: each sentence's words. Generation: conversations, the system prompt
    # applied.
    texts: list[Any]
    text_pairs: list[str] | None
    # As the task reads them: class ids, lists of label ids, numbers; generation: each
    # conversation's last assistant turn (the reference answer).
    labels: list[Any]
    label_names: list[str]
    train_idx: list[int]
    validation_idx: list[int]
    test_idx: list[int]
    image_root: Path | None = None  # the dataset's folder, for image datasets


@dataclass
class _Part:
    inputs: list[Any]  # texts, image paths, or sentences' words
    pairs: list[str] | None
    labels: list[Any]  # as the cells read: class names, lists of names, numbers


def _text_parts(dataset: Dataset, settings: Settings) -> dict[str, _Part]:
    choice = ColumnChoice(
        text=dataset.text_column,
        label=dataset.label_column,
        text_pair=dataset.text_pair_column,
        task=dataset.task,
        separator=dataset.label_separator,
        indicators=tuple(dataset.label_columns) if dataset.label_columns else None,
    )
    parts = {}
    for name, table in read_parts(dataset, settings).items():
        examples = extract_examples(table, choice)
        parts[name] = _Part(examples.texts, examples.text_pairs, examples.labels)
    return parts


def _image_parts(dataset: Dataset, settings: Settings) -> dict[str, _Part]:
    manifest = read_manifest(dataset_folder(settings, dataset.id))
    return {
        name: _Part([image.path for image in images], None, [image.label for image in images])
        for name, images in manifest.items()
    }


def _tagged_parts(dataset: Dataset, settings: Settings) -> dict[str, _Part]:
    """Entity tagging: each sentence's words as the input, its tags as the label."""
    files = part_paths(settings, dataset.id, dataset.files)
    return {
        name: _Part([s.tokens for s in sentences], None, [s.tags for s in sentences])
        for name, sentences in read_sentences(files).items()
    }


def _chat_parts(dataset: Dataset, settings: Settings) -> dict[str, _Part]:
    """Generation: each conversation as the input, its last answer as the label."""
    return {
        name: _Part(conversations, None, [c[-1]["content"] for c in conversations])
        for name, conversations in chat_datasets.training_conversations(dataset, settings).items()
    }


def load_training_data(dataset: Dataset, settings: Settings, *, seed: int) -> TrainingData:
    image = dataset.modality == Modality.image
    if dataset.task == tagged_datasets.NAME:
        parts = _tagged_parts(dataset, settings)
    elif dataset.task == chat_datasets.NAME:
        parts = _chat_parts(dataset, settings)
    else:
        parts = _image_parts(dataset, settings) if image else _text_parts(dataset, settings)
    train = parts["train"]
    label_names = list(dataset.label_names)
    task = get_task(dataset.task)
    for part in parts.values():
        part.labels = task.encode(part.labels, label_names)
    split = task.split(
        train.labels,
        label_names,
        seed=seed,
        validation_fraction=0 if "validation" in parts else VALIDATION_FRACTION,
        test_fraction=0 if "test" in parts else TEST_FRACTION,
    )
    train_idx, validation_idx, test_idx = (
        list(split.train),
        list(split.validation),
        list(split.test),
    )

    inputs, pairs, labels = list(train.inputs), list(train.pairs or []), list(train.labels)
    # Separate files are appended after the training rows; their indices follow on.
    for name, target in (("validation", validation_idx), ("test", test_idx)):
        if name in parts:
            start = len(inputs)
            inputs += parts[name].inputs
            pairs += parts[name].pairs or []
            labels += parts[name].labels
            target.extend(range(start, len(inputs)))

    return TrainingData(
        texts=inputs,
        text_pairs=pairs if train.pairs is not None else None,
        labels=labels,
        label_names=label_names,
        train_idx=train_idx,
        validation_idx=validation_idx,
        test_idx=test_idx,
        image_root=dataset_folder(settings, dataset.id) if image else None,
    )
