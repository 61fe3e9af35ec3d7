"""Publish a trained model as a ZIP that loads without Tuneboard.

Layout of `export.zip` (and of the `export/` folder it is made from):
    adapter/            LoRA jobs: the adapters alone, in PEFT's format (PeftModel.from_pretrained
                        on the base model), for those who keep one base and many adapters
    model/              the weights (safetensors) and config with the label names (and what
                        the task adds: problem type, multi-label thresholds), as the
                        classifier saves them: a transformers save_pretrained folder with
                        its tokenizer or image processor; for text models that declare a
                        pooling, a sentence-transformers folder whose last module (a Dense
                        layer) is the trained head; for the packaged CNNs
                        model.safetensors + config.json + modeling.py (plain PyTorch);
                        training_args.json (the settings that made them)
    README.md           model card: data, strategy, settings, metrics, how to load it
    metrics.json
The ZIP is written under a temporary name and renamed, so `export.zip` exists only complete.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from worker.training import job_files
from worker.training.atomic_file import replacing
from worker.training.classifier import Classifier
from worker.training.hyperparameters import SETTINGS, STEPPING
from worker.training.spec import TRANSFER_FROZEN, TrainSpec
from worker.training.tasks import get_task

# Weights barely compress; deflating them would only cost time.
STORED_SUFFIXES = (".safetensors", ".bin")


def write_json(path: Path, value: Any) -> None:
    """Write under a temporary name and rename, so a reader never sees half a file."""
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")


# What a head fitted to convergence (frozen features) never reads: the settings of steps.
STEPPING_ONLY = {s.name for s in SETTINGS if s.setting.strategies == STEPPING}


def training_args(
    spec: TrainSpec, learning_rate: float | None, metrics: dict[str, Any]
) -> dict[str, Any]:
    """The settings that produced the weights, saved next to them (nanoGPT-style)."""
    params: dict[str, Any] = {**asdict(spec.params), "learning_rate": learning_rate}
    if spec.strategy == TRANSFER_FROZEN:
        params = {k: v for k, v in params.items() if k not in STEPPING_ONLY}
    for stage in ("head", "probe"):  # the L2 strength chosen on validation (head_fit.py)
        if f"{stage}_l2" in metrics:
            params[f"{stage}_l2"] = metrics[f"{stage}_l2"]
    return {
        "job_id": spec.job_id,
        "model_id": spec.model_id,
        "strategy": spec.strategy,
        "dataset_name": spec.dataset_name,
        "dataset_fingerprint": spec.dataset_fingerprint,
        "label_names": list(spec.label_names),
        "params": params,
        "rows": {
            "train": len(spec.train_idx),
            "validation": len(spec.validation_idx),
            "test": len(spec.test_idx),
        },
    }


def how_trained(metrics: dict[str, Any]) -> str:
    """The card's line on how the kept weights were chosen."""
    if "head_l2" in metrics:
        return (
            f"| head | fitted to convergence (full-batch L-BFGS), L2 {metrics['head_l2']:.0e} "
            f"chosen on validation loss among {metrics['epochs_run']} strengths |"
        )
    if metrics["best_epoch"] == 0:  # lp_ft, whose fine-tuning never beat its fitted head
        tuned = metrics["epochs_run"]
        return f"| best epoch | 0: the fitted head, no better after {tuned} epochs of tuning |"
    return f"| best epoch | {metrics['best_epoch']} of {metrics['epochs_run']} run |"


def _score_rows(metrics: dict[str, Any]) -> list[tuple[str, float]]:
    """Every test score, then the validation scores of the kept weights."""
    rows = [
        (f"test {k.removeprefix('test_').replace('_', ' ')}", v)
        for k, v in metrics.items()
        if k.startswith("test_") and isinstance(v, float)
    ]
    rows += [
        (f"validation {k.removeprefix('val_').replace('_', ' ')} (the kept weights)", v)
        for k, v in metrics.items()
        if k.startswith("val_") and isinstance(v, float)
    ]
    return rows


def _label_table(metrics: dict[str, Any]) -> str:
    """Per class (classification) or per label with its threshold (multi-label)."""
    if "per_label" in metrics:
        rows = [
            f"| {name} | {c['threshold']:.2f} | {c['precision']:.4f} | {c['recall']:.4f} "
            f"| {c['f1']:.4f} | {c['support']} |"
            for name, c in metrics["per_label"].items()
        ]
        head = (
            "| label | threshold | precision | recall | F1 | support |\n|---|---|---|---|---|---|"
        )
        return head + "\n" + "\n".join(rows)
    if "per_class" in metrics:
        rows = [
            f"| {name} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} "
            f"| {c['support']} |"
            for name, c in metrics["per_class"].items()
        ]
        head = "| class | precision | recall | F1 | support |\n|---|---|---|---|---|"
        return head + "\n" + "\n".join(rows)
    return ""


def model_card(
    spec: TrainSpec, args: dict[str, Any], metrics: dict[str, Any], snippet: str, noun: str
) -> str:
    settings = "\n".join(f"- `{k}`: {v}" for k, v in args["params"].items())
    headline = metrics["headline_metric"].removeprefix("test_").replace("_", " ")
    better = "higher" if metrics["headline_higher_is_better"] else "lower"
    outputs = (
        f"Target: **{spec.label_names[0]}**, predicted in its own units."
        if spec.task == "regression"
        else "It answers conversations: the chat template is in the tokenizer."
        if spec.task == "generation"
        else f"Labels: {', '.join(spec.label_names)}"
    )
    return f"""# {spec.dataset_name} {noun} ({spec.model_id}, {spec.strategy})

Trained by Tuneboard, job {spec.job_id}, from `{spec.model_id}` on the dataset
**{spec.dataset_name}** ({args["rows"]["train"]} training, {args["rows"]["validation"]}
validation and {args["rows"]["test"]} test rows) with the strategy **{spec.strategy}**.
Task: **{spec.task}**; runs are ranked by test {headline} ({better} is better).

{outputs}

## Load it

From the folder this card is in:

```python
{snippet}
```

## Metrics

| metric | value |
|---|---|
{chr(10).join(f"| {name} | {value:.4f} |" for name, value in _score_rows(metrics))}
{how_trained(metrics)}
| trainable parameters | {metrics["trainable_params"]:,} |
| total parameters | {metrics["total_params"]:,} |

{_label_table(metrics)}

## Settings

{settings}

The same settings are in `model/training_args.json`; all metrics are in `metrics.json`.
"""


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", "<br>")


def samples_section(samples: dict[str, Any], metrics: dict[str, Any]) -> str:
    """Generation: the sample prompts answered by the base model and by the kept weights."""
    kept = samples["epochs"].get(str(metrics["best_epoch"]))
    if not samples["rows"] or samples.get("base") is None or kept is None:
        return ""
    lines = [
        "",
        "## Before and after",
        "",
        f"Validation prompts answered greedily by the base model and after epoch "
        f"{metrics['best_epoch']} (the kept weights), beside the reference answer.",
        "",
        "| prompt | base model | tuned | reference |",
        "|---|---|---|---|",
    ]
    for row, before, after in zip(samples["rows"], samples["base"], kept, strict=True):
        cells = (row["text"], before, after, row["reference"])
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def export_model(
    spec: TrainSpec,
    clf: Classifier,
    model: nn.Module,
    *,
    metrics: dict[str, Any],
    learning_rate: float | None,
    config: dict[str, Any] | None = None,
) -> Path:
    """Write `output_dir/export/`, zip it, publish `output_dir/export.zip`; return that path.
    `config`: what the task adds to the model's config.json (problem type, thresholds)."""
    folder = job_files.export_dir(spec.output_dir)
    if folder.exists():  # left by an earlier, interrupted attempt
        shutil.rmtree(folder)
    model_dir = folder / "model"
    clf.save(model, model_dir)
    if config:
        saved = json.loads((model_dir / "config.json").read_text())
        (model_dir / "config.json").write_text(json.dumps(saved | config, indent=2) + "\n")
    adapter = job_files.adapter_dir(spec.output_dir)
    if adapter.is_dir():
        shutil.copytree(adapter, folder / "adapter")
    args = training_args(spec, learning_rate, metrics)
    (model_dir / "training_args.json").write_text(json.dumps(args, indent=2) + "\n")
    task = get_task(spec.task)
    reading = task.reading_snippet()
    snippet = (
        clf.loading_snippet()
        if spec.task == "classification" or not reading
        else clf.outputs_snippet() + "\n" + reading
    )
    card = model_card(spec, args, metrics, snippet, task.noun)
    samples = job_files.samples(spec.output_dir)
    if samples.is_file():
        card += samples_section(json.loads(samples.read_text()), metrics)
    (folder / "README.md").write_text(card)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")

    published = job_files.export_zip(spec.output_dir)
    with replacing(published) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            stored = path.suffix in STORED_SUFFIXES
            archive.write(
                path,
                path.relative_to(folder).as_posix(),
                compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED,
            )
    return published
