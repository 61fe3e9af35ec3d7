"""What Tuneboard refuses to load from a model folder: pickled weights (unpickling can run
code) and models that need their own code (trust_remote_code). The catalogue asks before it
lists a folder, the worker before it loads one, and every loader in worker/training/ before
it reads one: this module, torch-free and app-free, is the one rule for all of them."""

from __future__ import annotations

import json
from pathlib import Path

SAFETENSORS_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLED_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.ckpt", "model.pt")
# Configs whose auto_map asks transformers to import code shipped with the model.
CODE_CONFIGS = ("config.json", "tokenizer_config.json", "preprocessor_config.json")


def folder_problem(folder: Path) -> str | None:
    """Why Tuneboard refuses to load the model folder, or None: its weights must be
    safetensors (a pickled checkpoint runs code when loaded) and it must not need its own
    code (trust_remote_code)."""
    for name in CODE_CONFIGS:
        try:
            config = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(config, dict) and config.get("auto_map"):
            return (
                f"the model folder {folder.name} requires its own code (trust_remote_code: "
                f"auto_map in {name}), which Tuneboard never runs; use a model whose "
                "architecture transformers ships"
            )
    if not any((folder / name).is_file() for name in SAFETENSORS_FILES):
        pickled = [name for name in PICKLED_FILES if (folder / name).is_file()]
        found = f" (it holds {', '.join(pickled)})" if pickled else ""
        return (
            f"the model folder {folder.name} has no safetensors weights (model.safetensors)"
            f"{found}; pickled checkpoints (pytorch_model.bin) are never loaded, as unpickling "
            "can run code. Download the model's model.safetensors, or convert it once on a "
            "machine you trust: AutoModel.from_pretrained(folder).save_pretrained(folder) "
            "writes model.safetensors"
        )
    return None


def check_model_folder(folder: str | Path) -> None:
    """Raise ValueError (the job's reason) when the folder holds no safetensors weights or
    asks for its own code; Tuneboard loads neither pickles nor remote code."""
    problem = folder_problem(Path(folder))
    if problem is not None:
        raise ValueError(problem)
