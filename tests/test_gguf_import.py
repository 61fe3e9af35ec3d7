"""The packaged SmolLM2 GGUF becomes a safetensors folder once, and that folder generates as
the model should: greedy decoding names Paris as France's capital."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from worker.training.gguf_import import MARKER, import_gguf, packaged_smollm2

pytestmark = pytest.mark.slow


def test_the_packaged_smollm2_converts_once_and_answers(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    folder, gguf = packaged_smollm2()
    into = tmp_path / "smollm2-135m-instruct"
    made = import_gguf(folder, gguf, into)
    assert made == into and (into / MARKER).is_file()
    assert (into / "model.safetensors").is_file() and not (into / gguf).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no work folder left

    started = time.perf_counter()
    assert import_gguf(folder, gguf, into) == into  # already made: nothing to do
    assert time.perf_counter() - started < 1.0

    tokenizer = AutoTokenizer.from_pretrained(into)
    model = AutoModelForCausalLM.from_pretrained(into, dtype=torch.float32).eval()
    assert tokenizer.chat_template  # the chat format travels with the folder
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer
