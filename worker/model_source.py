"""Where a catalogue entry's weights are on this machine, and which device trains."""

from __future__ import annotations

from pathlib import Path

import torch

from app.catalog import ModelEntry, is_hub_id
from app.jobs.models import Device
from worker.training.model_files import check_model_folder

# Only these files are fetched from the Hub: configs, tokenizers and safetensors weights —
# never pickled checkpoints or custom code.
HUB_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors"]


def local_model_path(entry: ModelEntry) -> str:
    """The entry's folder (or packaged checkpoint file), downloading a Hub id first. Every
    Hugging Face folder is checked before anything in it is loaded."""
    if entry.path is not None and entry.path.endswith(".gguf"):
        return converted_gguf(entry)
    if entry.path is not None:
        if Path(entry.path).is_dir():
            check_model_folder(entry.path)
        return entry.path
    # Defence in depth: the catalogue only makes Hub entries from valid ids, but nothing that
    # is not one (a URL, a path, an id with a revision) ever reaches the downloader.
    if entry.source != "hub" or not is_hub_id(entry.id):
        raise ValueError(
            f"model {entry.id!r} is not a catalogue entry or a Hugging Face Hub id "
            "(namespace/name); URLs and paths are never model sources"
        )
    from huggingface_hub import snapshot_download

    # The revision is always the default branch and the endpoint the configured one; the id
    # cannot choose either.
    folder = snapshot_download(
        entry.id, repo_type="model", revision="main", allow_patterns=HUB_PATTERNS
    )
    check_model_folder(folder)
    return folder


def pick_device(choice: Device) -> str:
    if choice == Device.gpu:
        if not torch.cuda.is_available():
            raise ValueError("this job asks for a GPU but the worker that took it has none")
        return "cuda"
    if choice == Device.auto and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def converted_gguf(entry: ModelEntry) -> str:
    """A packaged GGUF model (SmolLM2) as a safetensors folder in the model cache,
    converted on first use (seconds to a minute), then reused by every job."""
    from app.config import get_settings
    from worker.training.gguf_import import import_gguf

    assert entry.path is not None
    gguf = Path(entry.path)
    into = get_settings().data_dir / "models" / entry.id
    return str(import_gguf(gguf.parent, gguf.name, into))
