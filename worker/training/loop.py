"""The training loop every strategy shares, read top to bottom.

What trains is whatever has `requires_grad` (the whole model, its top blocks, LoRA adapters,
or only its head), and `forward` maps a batch to logits (token batches through the whole
model, or cached feature batches through the head), so every strategy runs the same loop.
A second stage (lp_ft's fine-tuning after its probe) continues the first one's epochs,
steps and best epoch, so both stages share one x axis and one "best".
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from worker.training import checkpoint
from worker.training.distributed import SINGLE, Group
from worker.training.evaluation import Forward, predict_logits
from worker.training.optimizer import adamw, set_rate, warmup_then_decay
from worker.training.reporting import Cancelled, Reporter
from worker.training.spec import TrainParams
from worker.training.tasks import JobTask
from worker.training.text_data import BatchSource, length_grouped_batches, to_device

LOG_EVERY = 10  # steps between train_loss reports: a smooth curve without a row per step
MAX_GRAD_NORM = 1.0


@dataclass(frozen=True)
class Checkpoints:
    """Where and how often a stage saves its state (checkpoint.py), and what it must match."""

    path: Path
    every_seconds: float
    identity: str  # checkpoint.identity of the job: a foreign checkpoint is never resumed
    stage: str  # what the saved state is of ("training")
    # What earlier stages found, saved with the state so a resumed run reports it too
    # (lp_ft's fitted probe: its L2 path).
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FitOutcome:
    best_epoch: int  # 1-based, on the run's x axis (a second stage continues the first's)
    best_validation: dict[str, float]  # the task's validation scores at best_epoch
    best_logits: np.ndarray  # validation outputs at best_epoch, in validation_idx order
    epochs_run: int  # the last epoch on the x axis
    steps: int  # the last step on the x axis
    stopped_early: bool  # patience ran out before params.epochs
    train_examples: int  # rows through this stage's training steps, all epochs
    train_seconds: float  # time in this stage's training steps only (no validation)
    seconds: float  # this whole stage, validation included


def fit(
    model: nn.Module,
    forward: Forward,
    source: BatchSource,
    task: JobTask,
    *,
    train_idx: list[int],
    validation_idx: list[int],
    params: TrainParams,
    learning_rate: float,
    device: torch.device,
    reporter: Reporter,
    after: FitOutcome | None = None,
    epochs_after: int = 0,
    phase: str = "training",
    checkpoints: Checkpoints | None = None,
    resume: dict[str, Any] | None = None,
    head_modules: tuple[str, ...] = (),
    head_learning_rate: float | None = None,
    group: Group = SINGLE,
) -> FitOutcome:
    """Train for params.epochs (fewer when params.patience runs out) and leave the model
    holding its best validation epoch by the task's headline score. `after`: the stage this
    one continues, whose best stands until beaten; `epochs_after`: epochs of later stages,
    so progress counts toward the whole run; `phase`: what progress reports call these steps;
    `checkpoints`: save the state each epoch and every so often within one; `resume`: a
    checkpoint of this very stage to continue from; `head_learning_rate`: the peak rate of
    the parameters under `head_modules` (also inside a PEFT wrapper), on the same schedule;
    `group`: the ranks of a data-parallel run (distributed.py), each stepping its share of
    every batch; rank 0 alone reports and saves."""
    started = time.perf_counter()
    if not group.main:
        checkpoints = None
    cuda = device.type == "cuda"
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    # What the best epoch is restored from: the trained parameters, and the buffers, which
    # batch norms in train mode update (running statistics) — small next to the weights.
    kept = trainable + list(model.named_buffers())

    optimizer = adamw(
        trainable,
        learning_rate=learning_rate,
        weight_decay=params.weight_decay,
        head_modules=head_modules,
        head_learning_rate=head_learning_rate,
    )
    # Gradient accumulation: `accumulate` batches make one optimizer step (the last group of
    # an epoch may be smaller), so a step's effective batch is batch_size × accumulate.
    accumulate = params.gradient_accumulation
    batches_per_epoch = math.ceil(len(train_idx) / params.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / accumulate)
    total_steps = params.epochs * steps_per_epoch
    lr_at = warmup_then_decay(
        learning_rate, total_steps=total_steps, warmup_steps=int(params.warmup_ratio * total_steps)
    )

    all_targets = task.targets()
    headline = task.headline
    eval_batch_size = 2 * params.batch_size  # no activations kept for backward
    # Where this stage starts on the x axis, and the best it has to beat.
    first_epoch, first_step = (after.epochs_run, after.steps) if after else (0, 0)
    run_steps = first_step + (params.epochs + epochs_after) * steps_per_epoch
    best_epoch, best_validation, best_logits = 0, {headline.key: headline.worst}, np.empty(0)
    best_state: dict[str, torch.Tensor] | None = None
    if after is not None:  # the model holds the earlier stage's best: keep it unless beaten
        best_epoch, best_validation, best_logits = (
            after.best_epoch,
            after.best_validation,
            after.best_logits,
        )
        best_state = checkpoint.snapshot(kept)
    step, train_examples, train_seconds = 0, 0, 0.0
    epochs_without_gain, stopped_early, last_epoch = 0, False, first_epoch
    start_epoch, skip_batches = first_epoch, 0
    if resume is not None:
        with torch.no_grad():
            for name, t in kept:
                t.copy_(resume["tensors"][name])
        optimizer.load_state_dict(resume["optimizer"])
        best_state = resume["best_tensors"]
        best_logits = resume["best_logits"].numpy()
        meta = resume["meta"]
        best_epoch, best_validation = meta["best_epoch"], meta["best_validation"]
        step, train_examples, train_seconds = meta["step"], meta["train_examples"], meta["seconds"]
        epochs_without_gain, last_epoch = meta["epochs_without_gain"], meta["last_epoch"]
        start_epoch, skip_batches = meta["epoch"], meta["batch"]
        checkpoint.restore_rng(meta["rng"], resume["torch_rng"], source)
        reporter.log(
            f"resumed from a checkpoint at step {first_step + step} "
            f"(epoch {start_epoch + 1}, batch {skip_batches})"
        )
    last_saved = time.monotonic()
    # After any resume: DDP starts every rank from rank 0's parameters.
    step_forward = group.wrap(model, forward)

    def save(epoch: int, batch: int) -> None:
        """The state after `batch` batches of `epoch` (batch 0: the epoch has not begun)."""
        nonlocal last_saved
        if checkpoints is None:
            return
        meta = {
            "identity": checkpoints.identity,
            "stage": checkpoints.stage,
            "epoch": epoch,
            "batch": batch,
            "step": step,
            "run_step": first_step + step,
            "train_examples": train_examples,
            "seconds": train_seconds,
            "best_epoch": best_epoch,
            "best_validation": best_validation,
            "epochs_without_gain": epochs_without_gain,
            "last_epoch": last_epoch,
            "after": _outcome_meta(after),
            "rng": checkpoint.rng_state(source),
            "info": checkpoints.info,
        }
        checkpoint.save(
            checkpoints.path,
            {
                "meta": meta,
                "tensors": checkpoint.snapshot(kept),
                "optimizer": optimizer.state_dict(),
                "best_tensors": best_state if best_state is not None else {},
                "best_logits": torch.from_numpy(np.ascontiguousarray(best_logits)),
                "after_logits": torch.from_numpy(
                    np.ascontiguousarray(after.best_logits if after else np.empty(0))
                ),
                "torch_rng": torch.get_rng_state(),
            },
        )
        last_saved = time.monotonic()

    for epoch in range(start_epoch, first_epoch + params.epochs):
        model.train()
        _keep_norm_statistics(model)
        epoch_started = time.perf_counter()
        window_loss, window_steps, window_batches = torch.zeros((), device=device), 0, 0
        batches = length_grouped_batches(
            source.lengths, train_idx, params.batch_size, seed=params.seed, epoch=epoch
        )
        done_before = skip_batches if epoch == start_epoch else 0
        pending = 0  # batches whose gradients wait for the next optimizer step
        for position, idx in enumerate(batches[done_before:], start=done_before + 1):
            if group.any(reporter.should_stop()):
                raise Cancelled(f"cancelled at step {first_step + step}")
            rows, weight = group.shard(idx)  # all of idx, at weight 1, in a lone run
            batch = to_device({**source.batch(rows), "labels": all_targets[rows]}, device)
            targets = batch.pop("labels")
            group_start = position - 1 - pending
            steps_now = pending + 1 >= accumulate or position == len(batches)

            with step_forward.accumulating(waits=not steps_now):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                    logits = step_forward(batch)
                loss = task.loss(logits.float(), targets) * weight
                (loss / min(accumulate, len(batches) - group_start)).backward()
            pending += 1
            train_examples += len(idx)
            # Summed on the device: .item() every step would stall a GPU for nothing. Each
            # rank's share; their total (at report time) is the batch's mean loss.
            window_loss += loss.detach() / group.world
            window_batches += 1
            if not steps_now:
                continue
            set_rate(optimizer, lr_at(step))
            torch.nn.utils.clip_grad_norm_([p for _, p in trainable], MAX_GRAD_NORM)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            pending = 0

            step += 1
            window_steps += 1
            at = first_step + step  # on the run's x axis
            reporter.progress(step=at, total_steps=run_steps, phase=phase)
            if window_steps == LOG_EVERY:
                window_loss = group.total(window_loss)
                _report_train_loss(reporter, at, steps_per_epoch, window_loss, window_batches)
                window_loss, window_steps, window_batches = torch.zeros((), device=device), 0, 0
                # Mid-epoch checkpoints only at a reported point: the chart then resumes
                # exactly where the saved run had drawn it.
                if (
                    checkpoints is not None
                    and time.monotonic() - last_saved >= checkpoints.every_seconds
                    and position < len(batches)
                ):
                    train_seconds += time.perf_counter() - epoch_started
                    save(epoch, position)
                    epoch_started = time.perf_counter()
        at = first_step + step
        if window_batches:  # the epoch's tail, so every epoch reports at least once
            window_loss = group.total(window_loss)
            _report_train_loss(reporter, at, steps_per_epoch, window_loss, window_batches)
        train_seconds += time.perf_counter() - epoch_started

        # Validation once per epoch; the best epoch by the task's headline score is what gets
        # tested and exported.
        # In eval mode: with dropout on, the scores would be noisy and not the exported model's.
        # Each rank predicts its share of the rows; all score the same gathered outputs.
        model.eval()
        val_logits = group.gather(
            validation_idx,
            lambda rows: predict_logits(
                forward, source, rows, batch_size=eval_batch_size, device=device, reporter=reporter
            ),
        )
        scores = task.scores(val_logits, np.asarray(validation_idx))
        # generation: the sample prompts answered (by rank 0, which writes them)
        scores |= group.share(task.epoch_end(epoch + 1) if group.main else None)
        reporter.metrics(
            step=at, epoch=float(epoch + 1), values={f"val_{k}": v for k, v in scores.items()}
        )
        reporter.log(
            f"epoch {epoch + 1}/{first_epoch + params.epochs}: "
            + ", ".join(f"val_{k} {v:.4f}" for k, v in scores.items())
        )
        if headline.better(scores[headline.key], best_validation[headline.key]):
            best_epoch, best_validation, best_logits = epoch + 1, scores, val_logits
            best_state = checkpoint.snapshot(kept)
            epochs_without_gain = 0
        else:
            epochs_without_gain += 1
        last_epoch = epoch + 1
        if params.patience is not None and epochs_without_gain >= params.patience:
            stopped_early = last_epoch < first_epoch + params.epochs
            if stopped_early:
                reporter.log(
                    f"early stop: no better val_{headline.key} for {epochs_without_gain} epochs; "
                    f"keeping epoch {best_epoch}"
                )
            break
        save(epoch + 1, 0)

    # Only what trained (and the buffers) can differ from the loaded model; that is put back.
    assert best_state is not None
    with torch.no_grad():
        for name, t in kept:
            t.copy_(best_state[name])
    return FitOutcome(
        best_epoch=best_epoch,
        best_validation=best_validation,
        best_logits=best_logits,
        epochs_run=last_epoch,
        steps=first_step + step,
        stopped_early=stopped_early,
        train_examples=train_examples,
        train_seconds=train_seconds,
        seconds=time.perf_counter() - started,
    )


def _keep_norm_statistics(model: nn.Module) -> None:
    """Batch norms stay in eval mode, normalising with their pretrained running statistics
    (their scale and shift still train where their block does). In train mode they would
    normalise each small CPU batch by itself and drift their running statistics, so the
    network tested would differ from the one trained, and a "frozen" lower CNN would change
    under top-k or LoRA. Measured on EfficientNet-Lite0, 1 epoch of full fine-tuning on 500
    MNIST digits: test accuracy 0.02 with batch statistics, 0.40 with these (lr 5e-5), and
    0.18 against 0.68 at 3e-4 (bench/image_throughput.py has the setup)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _outcome_meta(outcome: FitOutcome | None) -> dict[str, Any] | None:
    """An earlier stage's outcome without its logits (saved as a tensor beside it)."""
    if outcome is None:
        return None
    return {k: v for k, v in asdict(outcome).items() if k != "best_logits"}


def outcome_from(state: dict[str, Any]) -> FitOutcome | None:
    """The earlier stage a checkpointed stage continued (lp_ft's probe), or None."""
    meta = state["meta"]["after"]
    if meta is None:
        return None
    return FitOutcome(**meta, best_logits=state["after_logits"].numpy())


def _report_train_loss(
    reporter: Reporter, step: int, steps_per_epoch: int, loss_sum: torch.Tensor, batches: int
) -> None:
    """The mean batch loss since the last report."""
    reporter.metrics(
        step=step,
        epoch=step / steps_per_epoch,
        values={"train_loss": loss_sum.item() / batches},
    )
