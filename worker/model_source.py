"""Where a catalogue entry's weights are on this machine, and which device trains."""

from __future__ import annotations

import torch

from app.catalog import ModelEntry
from app.jobs.models import Device

# Only these files are fetched from the Hub: configs, tokenizers and safetensors weights —
# never pickled checkpoints or custom code.
HUB_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors"]


def local_model_path(entry: ModelEntry) -> str:
    if entry.path is not None:
        return entry.path
    from huggingface_hub import snapshot_download

    return snapshot_download(entry.id, allow_patterns=HUB_PATTERNS)


def pick_device(choice: Device) -> str:
    if choice == Device.gpu:
        if not torch.cuda.is_available():
            raise ValueError("this job asks for a GPU but the worker that took it has none")
        return "cuda"
    if choice == Device.auto and torch.cuda.is_available():
        return "cuda"
    return "cpu"
