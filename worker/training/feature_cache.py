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
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel

from worker.training.reporting import Cancelled, Reporter
from worker.training.text_data import TokenizedTexts, Tokens, sorted_batches, to_device
from worker.training.text_model import first_token_state

FEATURE_VERSION = "cls-v1"  # bump when what a feature *is* changes
SMALL_FILE_BYTES = 8 * 1024 * 1024  # config and tokenizer files: hashed; weights: size + mtime


def model_identity(model_path: str) -> list[list[str]]:
    """What distinguishes one model folder's contents from another, cheaply: the small
    files (config, tokenizer) by content hash, the big weight files by size and mtime."""
    identity = []
    for path in sorted(Path(model_path).iterdir()):
        if not path.is_file():
            continue
        stat = path.stat()
        if stat.st_size <= SMALL_FILE_BYTES:
            identity.append([path.name, hashlib.sha256(path.read_bytes()).hexdigest()])
        else:
            identity.append([path.name, f"{stat.st_size}:{stat.st_mtime_ns}"])
    return identity


def cache_key(*, model_id: str, model_path: str, dataset_fingerprint: str, max_length: int) -> str:
    parts = [model_id, model_identity(model_path), dataset_fingerprint, max_length, FEATURE_VERSION]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def load_features(path: Path, rows: int, width: int) -> torch.Tensor | None:
    """The cached features, or None when absent or not the expected shape."""
    if not path.exists():
        return None
    try:
        features = load_file(path)["features"]
    except Exception:  # a damaged file is a miss, and gets rewritten
        return None
    return features if tuple(features.shape) == (rows, width) else None


def save_features(path: Path, features: torch.Tensor, metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({"features": features.contiguous()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@torch.inference_mode()
def compute_features(
    model: PreTrainedModel,
    tokens: TokenizedTexts,
    *,
    batch_size: int,
    device: torch.device,
    reporter: Reporter,
) -> torch.Tensor:
    """One forward pass of the backbone over every row, longest batches first."""
    model.eval()
    rows = len(tokens.lengths)
    features = torch.empty(rows, int(model.config.hidden_size), dtype=torch.float32)
    batches = sorted_batches(tokens.lengths, np.arange(rows), batch_size)
    for i, idx in enumerate(batches):
        if reporter.should_stop():
            raise Cancelled("cancelled while computing features")
        inputs = to_device(tokens.batch(idx), device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            state = first_token_state(model, inputs)
        features[torch.from_numpy(idx)] = state.float().cpu()
        reporter.progress(step=i + 1, total_steps=len(batches), phase="features")
    return features


def cached_features(
    model: PreTrainedModel,
    tokens: Tokens,
    *,
    rows: int,
    key: str,
    cache_dir: Path,
    batch_size: int,
    device: torch.device,
    reporter: Reporter,
) -> tuple[torch.Tensor, bool, float]:
    """(features for every row, whether they came from the cache, seconds spent). On a hit
    the rows are never tokenised."""
    started = time.perf_counter()
    path = Path(cache_dir) / f"{key}.safetensors"
    features = load_features(path, rows, int(model.config.hidden_size))
    if features is not None:
        reporter.log(f"features: cache hit {path.name[:12]}…, forward pass skipped")
        return features, True, time.perf_counter() - started
    reporter.log(f"features: computing for {rows} rows (cache miss)")
    features = compute_features(
        model, tokens(), batch_size=batch_size, device=device, reporter=reporter
    )
    save_features(path, features, {"key": key, "version": FEATURE_VERSION})
    return features, False, time.perf_counter() - started
