"""Frozen-backbone features, computed once per (model, dataset, preprocessing) and kept on disk.

With the backbone frozen its output for a row never changes, so the forward pass — nearly
all the cost of transfer learning — runs once for all rows of a dataset, and every later
epoch and every later job with the same key reads a file instead. The key holds everything
the features depend on; a file is written under a temporary name and renamed, so a reader
never sees half of one.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from worker.training.atomic_file import replacing
from worker.training.classifier import Classifier
from worker.training.reporting import Cancelled, Reporter
from worker.training.text_data import BatchSource, sorted_batches, to_device

FEATURE_VERSION = "v2"  # bump when what a feature *is* changes
SMALL_FILE_BYTES = 8 * 1024 * 1024  # config and tokenizer files: hashed; weights: size + mtime


def model_identity(model_path: str) -> list[list[str]]:
    """What distinguishes one model folder's contents (or one checkpoint file) from another,
    cheaply: small files (config, tokenizer) by content hash, big weight files by size and
    mtime."""
    location = Path(model_path)
    identity = []
    for path in sorted(location.iterdir()) if location.is_dir() else [location]:
        if not path.is_file():
            continue
        stat = path.stat()
        if stat.st_size <= SMALL_FILE_BYTES:
            identity.append([path.name, hashlib.sha256(path.read_bytes()).hexdigest()])
        else:
            identity.append([path.name, f"{stat.st_size}:{stat.st_mtime_ns}"])
    return identity


def cache_key(
    *, model_id: str, model_path: str, dataset_fingerprint: str, preprocessing: Any
) -> str:
    """`preprocessing`: what else the features depend on (max length, image size and
    normalisation); Classifier.feature_identity gives it."""
    parts = [
        model_id,
        model_identity(model_path),
        dataset_fingerprint,
        preprocessing,
        FEATURE_VERSION,
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def feature_shape(clf: Classifier) -> tuple[int, ...]:
    """One row's features: a vector, or per token (entity tagging) width × hidden."""
    return tuple(getattr(clf, "feature_shape", (clf.feature_width,)))


def load_features(path: Path, rows: int, shape: tuple[int, ...]) -> torch.Tensor | None:
    """The cached features, or None when absent or not the expected shape."""
    if not path.exists():
        return None
    try:
        features = load_file(path)["features"]
    except Exception:  # a damaged file is a miss, and gets rewritten
        return None
    return features if tuple(features.shape) == (rows, *shape) else None


def save_features(path: Path, features: torch.Tensor, metadata: dict[str, str]) -> None:
    with replacing(path) as tmp:
        save_file({"features": features.contiguous()}, tmp, metadata=metadata)


@torch.inference_mode()
def compute_features(
    clf: Classifier,
    source: BatchSource,
    *,
    batch_size: int,
    device: torch.device,
    reporter: Reporter,
) -> torch.Tensor:
    """One forward pass of the backbone over every row, longest batches first."""
    clf.model.eval()
    rows = len(source.lengths)
    features = torch.zeros(rows, *feature_shape(clf), dtype=torch.float32)
    batches = sorted_batches(source.lengths, np.arange(rows), batch_size)
    for i, idx in enumerate(batches):
        if reporter.should_stop():
            raise Cancelled("cancelled while computing features")
        inputs = to_device(source.batch(idx), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            state = clf.features(inputs)
        if state.ndim == 2:
            features[torch.from_numpy(idx)] = state.float().cpu()
        else:  # per token: batches are only as wide as their longest row
            features[torch.from_numpy(idx), : state.shape[1]] = state.float().cpu()
        reporter.progress(step=i + 1, total_steps=len(batches), phase="features")
    return features


def cached_features(
    clf: Classifier,
    *,
    rows: int,
    key: str,
    cache_dir: Path,
    batch_size: int,
    device: torch.device,
    reporter: Reporter,
) -> tuple[torch.Tensor, bool, float]:
    """(features for every row, whether they came from the cache, seconds spent). On a hit
    the rows are never read (tokenised, decoded)."""
    started = time.perf_counter()
    path = Path(cache_dir) / f"{key}.safetensors"
    features = load_features(path, rows, feature_shape(clf))
    if features is not None:
        reporter.log(f"features: cache hit {path.name[:12]}…, forward pass skipped")
        return features, True, time.perf_counter() - started
    reporter.log(f"features: computing for {rows} rows (cache miss)")
    # Features are what the frozen backbone sees: never augmented.
    source = clf.rows(augment_idx=frozenset())
    features = compute_features(
        clf, source, batch_size=batch_size, device=device, reporter=reporter
    )
    save_features(path, features, {"key": key, "version": FEATURE_VERSION})
    return features, False, time.perf_counter() - started
