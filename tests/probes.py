"""The yardstick for frozen features: scikit-learn's logistic regression (its defaults, C=1)
on the very features a frozen job cached, with that job's own split.

Used by the MNIST test and by bench/frozen_heads.py, in a process whose settings point at
the server's data folder (the test's own app, or the bench's environment)."""

from __future__ import annotations

from typing import Any

import numpy as np
from safetensors.numpy import load_file
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from app.config import get_settings
from app.datasets.models import Dataset
from app.datasets.training_data import load_training_data
from app.db import get_sessionmaker
from app.jobs.artifacts import feature_cache_dir


def logistic_probe(dataset_id: int, *, seed: int = 42) -> dict[str, Any]:
    """Test accuracy and macro-F1 of the probe; the dataset's features must be cached once
    (one frozen job's model and preprocessing), as they are after its first frozen job."""
    settings = get_settings()
    with get_sessionmaker()() as session:
        dataset = session.get(Dataset, dataset_id)
        assert dataset is not None, dataset_id
        data = load_training_data(dataset, settings, seed=seed)
        files = sorted(feature_cache_dir(settings, dataset.content_hash).glob("*.safetensors"))
    assert len(files) == 1, f"expected one cached feature file, found {files}"
    features = load_file(files[0])["features"]
    labels = np.asarray(data.labels)
    train, test = np.asarray(data.train_idx), np.asarray(data.test_idx)
    probe = LogisticRegression(max_iter=10_000).fit(features[train], labels[train])
    predicted = probe.predict(features[test])
    return {
        "test_accuracy": float((predicted == labels[test]).mean()),
        "test_macro_f1": float(f1_score(labels[test], predicted, average="macro")),
        "test_rows": len(test),
    }
