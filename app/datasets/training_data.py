"""The examples and split a job trains on, rebuilt from the stored files.

The split depends only on the files, the column choice and the seed, so every job of a
comparison (same dataset, same seed) sees exactly the same train/validation/test rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings
from app.datasets.columns import ColumnChoice
from app.datasets.models import Dataset
from app.datasets.service import read_parts
from app.datasets.splitting import stratified_split
from app.datasets.validation import extract_examples

VALIDATION_FRACTION = 0.1
TEST_FRACTION = 0.1


@dataclass
class TrainingData:
    texts: list[str]
    text_pairs: list[str] | None
    labels: list[int]
    label_names: list[str]
    train_idx: list[int]
    validation_idx: list[int]
    test_idx: list[int]


def load_training_data(dataset: Dataset, settings: Settings, *, seed: int) -> TrainingData:
    choice = ColumnChoice(
        text=dataset.text_column, label=dataset.label_column, text_pair=dataset.text_pair_column
    )
    tables = read_parts(dataset, settings)
    parts = {name: extract_examples(table, choice) for name, table in tables.items()}
    train = parts["train"]
    split = stratified_split(
        train.labels,
        seed=seed,
        validation_fraction=0 if "validation" in parts else VALIDATION_FRACTION,
        test_fraction=0 if "test" in parts else TEST_FRACTION,
    )
    train_idx, validation_idx, test_idx = (
        list(split.train),
        list(split.validation),
        list(split.test),
    )

    texts, pairs, labels = list(train.texts), list(train.text_pairs or []), list(train.labels)
    # Separate files are appended after the training rows; their indices follow on.
    for name, target in (("validation", validation_idx), ("test", test_idx)):
        if name in parts:
            start = len(texts)
            texts += parts[name].texts
            pairs += parts[name].text_pairs or []
            labels += parts[name].labels
            target.extend(range(start, len(texts)))

    label_names = list(dataset.label_names)
    ids = {name: i for i, name in enumerate(label_names)}
    return TrainingData(
        texts=texts,
        text_pairs=pairs if choice.text_pair else None,
        labels=[ids[label] for label in labels],
        label_names=label_names,
        train_idx=train_idx,
        validation_idx=validation_idx,
        test_idx=test_idx,
    )
