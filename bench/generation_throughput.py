"""Generation fine-tuning throughput (issue 15), measured in one run on one machine.

Machines vary by ±12 % from run to run, so every contender runs in this one process, on the
same data, threads, device and precision, and the figures are compared as ratios:

  Tuneboard against TRL: training tokens per second of LoRA and of full fine-tuning of the
    packaged SmolLM2-135M-Instruct, `worker.training.run.run_training` against TRL's
    `SFTTrainer`, on the same conversations (tests/chat_data.py's reminder rewrites), both
    learning only the answers, with the same maximum length, batch size, learning rate and
    schedule, weight decay, clipping, fused AdamW, LoRA rank/alpha/dropout/targets and number
    of optimizer steps (one epoch of steps × batch size rows);
  dynamic padding: on conversations of mixed lengths (half one-line reminder rewrites, half
    week plans whose answers run 2-6 lines), full fine-tuning with Tuneboard's
    length-grouped, dynamically padded batches against the same run_training fed random
    batches, dynamically padded (what a plain DataLoader with a padding collator gives, as
    TRL's default) and padded to max length (only the loop's batch order and width are
    swapped in for the run).

Tokens are counted alike for every contender: the real (non-padding) tokens of the rows in
each optimizer step, prompt and answer together, from the end of the first step to the end
of the last. The first step is left out (it pays one-off costs: first passes at new shapes,
the optimizer state's allocation); validation, sample answers, testing and export lie outside
by construction. Tuneboard's times come from its reporter (called after every optimizer
step), TRL's from a TrainerCallback's on_step_end; on CUDA both synchronise the device first.
The tokens of each step are those of the batch it trained on: Tuneboard's batches are
rebuilt with the loop's own batching (same seed and epoch), TRL's are counted as its data
collator makes them. Besides tokens/s over all timed steps, each contender's median step
(each step's tokens / its time) is printed: on a machine shared with other work, a burst of
load slows a few steps of one contender, and the median shrugs it off.

TRL's masking: `assistant_only_loss=True` needs a chat template with `{% generation %}`
markers, which SmolLM2's ChatML template lacks and for which TRL ships no training template,
so TRL gets the same conversations in its conversational prompt-completion form (the turns
before the answer; the answer) with `completion_only_loss=True`. It then learns the tokens
after the rendered prompt and generation prompt: the answer, its end-of-turn marker and the
newline after it, which are the tokens Tuneboard learns. The script checks that both see the
same real and learned tokens.

    .venv/bin/python bench/generation_throughput.py                 # ~5.5 min on 2 cores
    .venv/bin/python bench/generation_throughput.py --only trl --steps 20
    .venv/bin/python bench/generation_throughput.py --device cuda   # bf16 autocast on a GPU

On the CPU both run fp32; on CUDA both run bf16 autocast over fp32 master weights
(Tuneboard's only mode there, TRL's `bf16=True`). The process's malloc is tuned as a
Tuneboard worker's (worker/allocator.py), for TRL in the same process too.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no Hub on these machines
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import numpy as np
import torch
import transformers

from tests.chat_data import CHORES, DAYS, reminder_conversations
from worker.allocator import keep_freed_memory
from worker.training import loop
from worker.training.causal_lm import CausalLM
from worker.training.chat_tokens import TokenizedChats, load_tokenizer, tokenize_chats
from worker.training.reporting import MemoryReporter
from worker.training.run import run_training
from worker.training.spec import ChatExamples, TrainParams, TrainSpec
from worker.training.text_data import length_grouped_batches

STRATEGIES = ("finetune_lora", "finetune_full")
TITLES = {"finetune_lora": "LoRA (rank 8)", "finetune_full": "full fine-tuning"}
# How the padding section's batches are cut: (title, row order, padded to max_length)
BATCHING = {
    "grouped": ("Tuneboard: length-grouped, dynamic padding", "grouped", False),
    "random": ("random batches, dynamic padding", "random", False),
    "padded": ("random batches padded to max length", "random", True),
}
SEED = 42
transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
warnings.filterwarnings("ignore", category=FutureWarning)  # renamed arguments, in their code


@dataclass(frozen=True)
class Measured:
    tokens_per_second: float  # real tokens of steps 2..N / their time
    median_step: float  # the median over steps 2..N of each step's real tokens / its time
    seconds_per_step: float  # steps 2..N
    step_seconds: tuple[float, ...]  # each of steps 2..N
    load: float  # the 1-minute load average when the run ended
    steps: int  # optimizer steps run (the first not timed)
    tokens: int  # real tokens of all N steps
    learned: int  # answer tokens of all N steps
    timed_tokens: int  # real tokens of steps 2..N
    run_tokens: int  # tokens the model ran on in steps 2..N, padding included
    product_figure: float | None = None  # Tuneboard's own train_tokens_per_second

    @property
    def padding_share(self) -> float:
        return 1 - self.timed_tokens / self.run_tokens


def measured(
    times: list[float], real: list[int], widths: list[int], rows: list[int], learned: int, **more
) -> Measured:
    """Tokens/s from the end of the first step to the end of the last (`real`: each step's
    real tokens; `widths`, `rows`: each step's padded width and row count)."""
    if len(times) != len(real) or len(times) < 2:
        raise SystemExit(f"{len(times)} timed optimizer steps for {len(real)} batches")
    seconds = times[-1] - times[0]
    each = [r / (t - before) for r, t, before in zip(real[1:], times[1:], times, strict=False)]
    return Measured(
        tokens_per_second=sum(real[1:]) / seconds,
        median_step=statistics.median(each),
        seconds_per_step=seconds / (len(times) - 1),
        step_seconds=tuple(t - before for t, before in zip(times[1:], times, strict=False)),
        load=os.getloadavg()[0],
        steps=len(times),
        tokens=sum(real),
        learned=learned,
        timed_tokens=sum(real[1:]),
        run_tokens=sum(w * r for w, r in zip(widths[1:], rows[1:], strict=True)),
        **more,
    )


def synchronise(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def release(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


# --- data -------------------------------------------------------------------------------


def week_plans(n: int, *, seed: int) -> list[list[dict[str, str]]]:
    """Long answers: chores by day, rewritten one line per chore, 2-6 lines."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        items = [(rng.choice(CHORES), rng.choice(DAYS)) for _ in range(rng.randint(2, 6))]
        prompt = "Plan my week: " + "; ".join(f"{c} on {d}" for c, d in items) + "."
        answer = "\n".join(f"{d.upper()}: {c}" for c, d in items)
        out.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}])
    return out


def mixed_conversations(n: int, *, seed: int = 1) -> list[list[dict[str, str]]]:
    """Half one-line reminder rewrites, half week plans, shuffled together."""
    rows = reminder_conversations(n - n // 2, seed=seed) + week_plans(n // 2, seed=seed)
    random.Random(seed).shuffle(rows)
    return rows


def describe(tokens: TokenizedChats, n_train: int) -> str:
    lengths = tokens.lengths[:n_train]
    learned = tokens.arrays["learn"][:n_train].sum(axis=1)
    cut = int((tokens.full_lengths[:n_train] > lengths).sum())
    return (
        f"{n_train} training rows, {int(lengths.min())}-{int(lengths.max())} tokens "
        f"(median {statistics.median(lengths.tolist()):.0f}), answers "
        f"{int(learned.min())}-{int(learned.max())} learned tokens (median "
        f"{statistics.median(learned.tolist()):.0f}); {cut} rows cut at max length"
    )


# --- Tuneboard --------------------------------------------------------------------------


class StepClock(MemoryReporter):
    """A reporter that notes the time at the end of every optimizer step."""

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = device
        self.times: list[float] = []

    def progress(self, *, step: int, total_steps: int, phase: str) -> None:
        if phase == "training":
            synchronise(self.device)
            self.times.append(time.perf_counter())
        super().progress(step=step, total_steps=total_steps, phase=phase)


def random_batches(
    lengths: np.ndarray, idx: Any, batch_size: int, *, seed: int, epoch: int
) -> list[np.ndarray]:
    """Batches of rows in a random order, lengths mixed (no grouping)."""
    order = np.random.default_rng([seed, epoch]).permutation(np.asarray(idx))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def batch_padded_to_max(self: TokenizedChats, idx: np.ndarray) -> dict[str, torch.Tensor]:
    """TokenizedChats.batch without dynamic padding: every row max_length wide."""
    out = {name: torch.from_numpy(a[idx].astype(np.int64)) for name, a in self.arrays.items()}
    width = self.arrays["input_ids"].shape[1]
    out["attention_mask"] = torch.from_numpy(
        (np.arange(width)[None, :] < self.lengths[idx, None]).astype(np.int64)
    )
    return out


@contextlib.contextmanager
def batching(order: str, pad_to_max: bool) -> Iterator[None]:
    """The loop's batches for one run: its own (length-grouped, dynamic padding), or random
    ones, optionally padded to max_length. Validation and testing see the same swap, but
    they lie outside the timed steps."""
    with contextlib.ExitStack() as stack:
        if order == "random":
            stack.enter_context(mock.patch.object(loop, "length_grouped_batches", random_batches))
        if pad_to_max:
            stack.enter_context(mock.patch.object(TokenizedChats, "batch", batch_padded_to_max))
        yield


def make_spec(
    model_path: str, conversations: list, strategy: str, args: argparse.Namespace, out: Path
) -> TrainSpec:
    """One epoch of args.steps batches; one validation and one test row, the least the job
    needs (each has its answer generated, outside the timed steps)."""
    n_train = args.steps * args.batch_size
    return TrainSpec(
        job_id=1,
        model_id="smollm2-135m",
        model_path=model_path,
        strategy=strategy,
        label_names=[],
        examples=ChatExamples(conversations[: n_train + 2]),
        train_idx=list(range(n_train)),
        validation_idx=[n_train],
        test_idx=[n_train + 1],
        dataset_name="bench conversations",
        dataset_fingerprint=f"bench-{strategy}-{out.name}",
        params=TrainParams(
            epochs=1,
            batch_size=args.batch_size,
            max_length=args.max_length,
            seed=SEED,
        ),
        output_dir=out,
        cache_dir=out.parent / "feature-cache",
        device=args.device,
        torch_threads=args.threads,
        checkpoint_every_seconds=1e9,  # no mid-epoch checkpoint among the timed steps
        task="generation",
    )


def tuneboard(
    model_path: str,
    conversations: list,
    strategy: str,
    args: argparse.Namespace,
    work: Path,
    *,
    name: str = "grouped",
) -> Measured:
    _, order, pad_to_max = BATCHING[name]
    spec = make_spec(model_path, conversations, strategy, args, work / f"{strategy}-{name}")
    # The rows as the job tokenises them, and its batches, rebuilt from the same seed.
    assert isinstance(spec.examples, ChatExamples)
    tokens = tokenize_chats(
        load_tokenizer(model_path), spec.examples.conversations, args.max_length
    )
    cut = length_grouped_batches if order == "grouped" else random_batches
    batches = cut(tokens.lengths, spec.train_idx, args.batch_size, seed=SEED, epoch=0)
    clock = StepClock(args.device)
    try:
        with batching(order, pad_to_max):
            metrics = run_training(spec, clock).metrics
    finally:
        shutil.rmtree(spec.output_dir, ignore_errors=True)
        release(args.device)
    lengths = tokens.lengths
    return measured(
        clock.times,
        [int(lengths[b].sum()) for b in batches],
        [args.max_length if pad_to_max else int(lengths[b].max()) for b in batches],
        [len(b) for b in batches],
        tokens.learned_tokens(spec.train_idx),
        product_figure=metrics["train_tokens_per_second"],
    )


# --- TRL --------------------------------------------------------------------------------


def trl_sft(
    model_path: str, conversations: list, strategy: str, args: argparse.Namespace, work: Path
) -> Measured:
    """TRL's SFTTrainer as a user would set it up for the same job, with what differs from
    Tuneboard's defaults set to match (SFTConfig turns gradient checkpointing on and bf16 on
    by default; Tuneboard's are off and fp32 on the CPU) and nothing evaluated, saved or
    logged."""
    from datasets import Dataset, disable_progress_bars
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    disable_progress_bars()
    out = work / f"trl-{strategy}"
    spec = make_spec(model_path, conversations, strategy, args, out)
    params = spec.params
    assert isinstance(spec.examples, ChatExamples)
    rows = [
        {"prompt": c[:-1], "completion": c[-1:]}
        for c in (spec.examples.conversations[i] for i in spec.train_idx)
    ]
    tokenizer = load_tokenizer(model_path)
    model = AutoModelForCausalLM.from_pretrained(
        model_path, dtype=torch.float32, use_safetensors=True
    )
    model.config.use_cache = False
    peft_config = None
    if strategy == "finetune_lora":
        # Tuneboard's own choice of projections for this model.
        targets, task_type = CausalLM(spec, tokenizer, model, torch.device("cpu")).lora_targets(
            strategy
        )
        peft_config = LoraConfig(
            task_type=task_type,
            r=params.lora_rank,
            lora_alpha=params.lora_alpha,
            lora_dropout=params.lora_dropout,
            target_modules=targets,
        )
    cuda = args.device == "cuda"
    config = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        num_train_epochs=1,
        learning_rate=params.learning_rate_for(strategy),
        lr_scheduler_type="linear",
        # Below 1: a share of the steps, as Tuneboard's (which rounds it down where
        # transformers rounds up: 0 and 1 of 12 steps; no matter for speed).
        warmup_steps=params.warmup_ratio,
        weight_decay=params.weight_decay,
        max_grad_norm=loop.MAX_GRAD_NORM,
        optim="adamw_torch_fused",  # Tuneboard's optimizer
        seed=SEED,
        max_length=args.max_length,
        completion_only_loss=True,
        packing=False,
        padding_free=False,
        gradient_checkpointing=False,
        bf16=cuda,
        fp16=False,
        use_cpu=not cuda,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    trainer.remove_callback(PrinterCallback)  # it prints the final metrics dict
    real: list[int] = []
    widths: list[int] = []
    sizes: list[int] = []
    learned: list[int] = []
    collate = trainer.data_collator

    def counting(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = collate(examples)
        real.append(int(batch["attention_mask"].sum()))
        sizes.append(int(batch["input_ids"].shape[0]))
        widths.append(int(batch["input_ids"].shape[1]))
        learned.append(int((batch["labels"][:, 1:] != -100).sum()))  # the shifted targets
        return batch

    trainer.data_collator = counting
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *_: Any, **__: Any) -> None:
            synchronise(args.device)
            times.append(time.perf_counter())

    trainer.add_callback(Clock())
    try:
        trainer.train()
        if trainer.state.global_step != args.steps:
            raise SystemExit(f"TRL ran {trainer.state.global_step} steps, not {args.steps}")
    finally:
        del trainer, model
        shutil.rmtree(out, ignore_errors=True)
        release(args.device)
    return measured(times, real, widths, sizes, sum(learned))


# --- the run ----------------------------------------------------------------------------


def packaged_model(cache: Path) -> str:
    from worker.training.gguf_import import import_gguf, packaged_smollm2

    folder, name = packaged_smollm2()
    return str(import_gguf(folder, name, into=cache))  # ~40 s the first time, then free


def progress(started: float, what: str, m: Measured) -> None:
    print(
        f"  [{time.perf_counter() - started:5.0f} s] {what}: {m.tokens_per_second:.1f} tokens/s "
        f"(median step {m.median_step:.1f}); s/step {m.seconds_per_step:.2f}, "
        f"{min(m.step_seconds):.2f}-{max(m.step_seconds):.2f}; load {m.load:.1f}",
        flush=True,
    )


def steps_spread(m: Measured) -> str:
    return f"{m.seconds_per_step:.2f} ({min(m.step_seconds):.2f}-{max(m.step_seconds):.2f})"


def against_trl(model_path: str, args: argparse.Namespace, work: Path, started: float) -> None:
    n_train = args.steps * args.batch_size
    conversations = reminder_conversations(n_train + 2, seed=SEED)
    tokens = tokenize_chats(load_tokenizer(model_path), conversations, args.max_length)
    print(f"\n## Tuneboard against TRL {trl_version()} SFTTrainer\n", flush=True)
    print(f"Reminder rewrites: {describe(tokens, n_train)}.", flush=True)
    # ABBA: each strategy's contenders one after the other, the second strategy in reverse
    # order, so neither drift nor going first favours one.
    runs = [
        ("finetune_lora", "tuneboard"),
        ("finetune_lora", "trl"),
        ("finetune_full", "trl"),
        ("finetune_full", "tuneboard"),
    ]
    results: dict[tuple[str, str], Measured] = {}
    for strategy, who in runs:
        if strategy not in args.strategies:
            continue
        if who == "tuneboard":
            m = tuneboard(model_path, conversations, strategy, args, work)
        else:
            m = trl_sft(model_path, conversations, strategy, args, work)
        results[strategy, who] = m
        progress(started, f"{TITLES[strategy]}, {who}", m)

    print(
        "\n| strategy | contender | tokens/s | tokens/s, median step | s/step (fastest-slowest) "
        "| Tuneboard / TRL |\n|---|---|---|---|---|---|"
    )
    for strategy in (s for s in STRATEGIES if s in args.strategies):
        ours, theirs = results[strategy, "tuneboard"], results[strategy, "trl"]
        ratio = ours.tokens_per_second / theirs.tokens_per_second
        median = ours.median_step / theirs.median_step
        print(
            f"| {TITLES[strategy]} | Tuneboard `run_training` | {ours.tokens_per_second:.1f} | "
            f"{ours.median_step:.1f} | {steps_spread(ours)} | **{ratio:.2f}×** "
            f"(median step {median:.2f}×) |\n"
            f"| | TRL `SFTTrainer` | {theirs.tokens_per_second:.1f} | {theirs.median_step:.1f} | "
            f"{steps_spread(theirs)} | |"
        )
    print()
    for strategy in (s for s in STRATEGIES if s in args.strategies):
        ours, theirs = results[strategy, "tuneboard"], results[strategy, "trl"]
        same = ours.tokens == theirs.tokens and ours.learned == theirs.learned
        print(
            f"- {TITLES[strategy]}: {ours.steps} steps each; real tokens Tuneboard "
            f"{ours.tokens:,} / TRL {theirs.tokens:,}, learned {ours.learned:,} / "
            f"{theirs.learned:,} ({'the same' if same else 'DIFFERENT'}); padding "
            f"{ours.padding_share:.0%} / {theirs.padding_share:.0%} of the tokens run; "
            f"Tuneboard's own train_tokens_per_second (every step, the first too) "
            f"{ours.product_figure:.1f}"
        )


def padding(model_path: str, args: argparse.Namespace, work: Path, started: float) -> None:
    n_train = args.steps * args.batch_size
    conversations = mixed_conversations(n_train + 2, seed=SEED)
    tokens = tokenize_chats(load_tokenizer(model_path), conversations, args.max_length)
    strategy = args.padding_strategy
    print(f"\n## Dynamic padding, {TITLES[strategy]}, max length {args.max_length}\n", flush=True)
    print(f"Mixed reminders and week plans: {describe(tokens, n_train)}.", flush=True)
    results = {}
    for name in args.batching:
        m = tuneboard(model_path, conversations, strategy, args, work, name=name)
        results[name] = m
        progress(started, BATCHING[name][0], m)
    ours = results.get("grouped")
    print(
        "\n| batches | tokens/s | tokens/s, median step | s/step (fastest-slowest) "
        "| padding in the tokens run | Tuneboard / this |\n|---|---|---|---|---|---|"
    )
    for name, m in results.items():
        ratio = ""
        if ours is not None and name != "grouped":
            ratio = (
                f"**{ours.tokens_per_second / m.tokens_per_second:.2f}×** "
                f"(median step {ours.median_step / m.median_step:.2f}×)"
            )
        print(
            f"| {BATCHING[name][0]} | {m.tokens_per_second:.1f} | {m.median_step:.1f} | "
            f"{steps_spread(m)} | {m.padding_share:.0%} | {ratio} |"
        )


def trl_version() -> str:
    import trl

    return trl.__version__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="torch threads, every run")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--only", choices=["trl", "padding"], action="append")
    parser.add_argument(
        "--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES),
        help="against TRL",
    )  # fmt: skip
    parser.add_argument(
        "--padding-strategy", choices=STRATEGIES, default="finetune_full",
        help="the padding section's strategy",
    )  # fmt: skip
    parser.add_argument(
        "--batching", nargs="+", choices=list(BATCHING), default=list(BATCHING),
        help="the padding section's batches (grouped: Tuneboard's)",
    )  # fmt: skip
    parser.add_argument(
        "--model", help="a causal LM folder instead of the packaged SmolLM2 (a quick check)"
    )
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "tuneboard-bench" / "smollm2",
        help="where the packaged SmolLM2 is converted once",
    )  # fmt: skip
    args = parser.parse_args()
    if args.steps < 2:
        raise SystemExit("--steps must be at least 2: the first step is not timed")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU here")
    sections = args.only or ["trl", "padding"]
    # As a Tuneboard worker runs every job (worker/allocator.py); TRL, in this same
    # process, gets the same malloc settings.
    tuned = keep_freed_memory()
    torch.set_num_threads(args.threads)
    model_path = args.model or packaged_model(args.cache)
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, trl "
        f"{trl_version()}; device {args.device} "
        f"({'bf16 autocast' if args.device == 'cuda' else 'fp32'}), {args.threads} threads, "
        f"batch {args.batch_size}, max length {args.max_length}, {args.steps} optimizer steps "
        f"per run (the first not timed); malloc tuned as a worker's: {tuned}; "
        f"model {model_path}"
    )
    print("load average at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="tuneboard-bench-"))
    try:
        if "trl" in sections:
            against_trl(model_path, args, work, started)
        if "padding" in sections:
            padding(model_path, args, work, started)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\nload average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"whole bench: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
