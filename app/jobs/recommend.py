"""The Auto strategy: a rule anyone can read, from the data, the model and the device, plus
a quick frozen-features probe where it can change the answer.

Why these thresholds: with a few dozen examples per class, updating millions of weights
mostly memorises, so a head on frozen features is both safer and far cheaper. With
thousands of examples, every layer can adapt. In between, LP-FT fine-tunes but starts from a
trained head, so the first updates do not wreck the pretrained features. Whatever the size,
when frozen features already score very well, fine-tuning can add little for its cost.

Generation is different (`_for_generation`): there is no head to fit on frozen features, so
the choice is how much of the language model trains, from its size, the conversations and
the device.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.catalog import ModelEntry
from app.datasets.models import Dataset
from app.datasets.training_data import TEST_FRACTION, VALIDATION_FRACTION
from app.jobs.models import Device
from app.jobs.strategies import Strategy

FEW_PER_CLASS = 20
SMALL_DATA = 300
LARGE_DATA = 3000
GOOD_PROBE = 0.95  # validation macro-F1 of the frozen-features probe
BIG_MODEL_FOR_CPU = 60_000_000
BIG_MODEL_FOR_GPU = 300_000_000
# Generation. Under a few thousand conversations, training every weight of a language model
# mostly memorises them; LoRA's adapters learn the answers' form and leave the rest alone.
MANY_CONVERSATIONS = 2000
# On a CPU every step of a model past ~100M parameters is slow, and Adam's two moments for
# every weight triple its memory; LoRA trains well under 1 % of them.
LORA_ON_CPU_FROM = 100_000_000
# Full fine-tuning holds weights, gradients and Adam's two moments: about 16 bytes a
# parameter in fp32, so 8 GB for a 500M model, which an ordinary GPU still holds.
FULL_ON_GPU_UP_TO = 500_000_000


@dataclass(frozen=True)
class Recommendation:
    strategy: Strategy
    reason: str
    wants_probe: bool  # a probe score could change this answer


def _data_phrase(task: str, train_rows: int, min_per_class: int, num_classes: int) -> str:
    """The data's size in the task's terms."""
    if task == "regression":
        return f"{train_rows} training examples"
    if task == "multi_label":
        return (
            f"{train_rows} training examples ({min_per_class} carry the rarest of "
            f"{num_classes} labels)"
        )
    return (
        f"{train_rows} training examples ({min_per_class} in the smallest of {num_classes} classes)"
    )


def recommend(
    *,
    train_rows: int,
    min_per_class: int,
    num_classes: int,
    model_parameters: int | None,
    on_gpu: bool,
    probe_score: float | None = None,
    task: str = "classification",
) -> Recommendation:
    """`min_per_class`: rows of the rarest class (multi-label: label); regression has no
    classes and passes its row count. `probe_score`: the frozen-features probe's validation
    macro-F1 (the classifications' headline; regression asks for no probe, its headline
    having no scale a threshold could be set on)."""
    if task == "generation":
        return _for_generation(train_rows, model_parameters, on_gpu)
    probes = task != "regression"
    if min_per_class < FEW_PER_CLASS or train_rows < SMALL_DATA:
        return Recommendation(
            Strategy.transfer_frozen,
            f"With {_data_phrase(task, train_rows, min_per_class, num_classes)}, fine-tuning "
            "would mostly memorise: a head on frozen features is the safe, fast choice.",
            wants_probe=False,
        )
    if probe_score is not None and probe_score >= GOOD_PROBE:
        return Recommendation(
            Strategy.transfer_frozen,
            f"Frozen features already reach {100 * probe_score:.1f}% validation macro-F1, "
            "so fine-tuning could add little for many times the cost.",
            wants_probe=False,
        )
    params = model_parameters or 0
    probed = (
        f" (frozen features reach {100 * probe_score:.1f}% macro-F1, room to improve)"
        if probe_score is not None
        else ""
    )
    wants_probe = probes and probe_score is None
    if on_gpu and params >= BIG_MODEL_FOR_GPU:
        return Recommendation(
            Strategy.finetune_lora,
            f"A {params / 1e6:.0f}M-parameter model on a GPU: LoRA adapters tune it with a "
            f"fraction of the optimizer memory{probed}.",
            wants_probe=wants_probe,
        )
    if not on_gpu and params >= BIG_MODEL_FOR_CPU:
        return Recommendation(
            Strategy.transfer_top_k,
            f"A {params / 1e6:.0f}M-parameter model on a CPU: training only the top layers "
            f"keeps each step affordable{probed}.",
            wants_probe=wants_probe,
        )
    if train_rows >= LARGE_DATA:
        return Recommendation(
            Strategy.finetune_full,
            f"{train_rows} training examples are enough to adapt every layer{probed}.",
            wants_probe=wants_probe,
        )
    return Recommendation(
        Strategy.lp_ft,
        f"{train_rows} training examples: fine-tuning should help, and starting it from a "
        f"trained probe keeps the pretrained features intact early on{probed}.",
        wants_probe=wants_probe,
    )


def _for_generation(conversations: int, parameters: int | None, on_gpu: bool) -> Recommendation:
    """LoRA unless there is much to learn from and room to train more: every layer on a GPU
    for a model that fits with its optimizer, the top layers on a CPU for a small one. Never
    frozen features or LP-FT: a language model answers through its own output layer."""
    if conversations < MANY_CONVERSATIONS:
        return Recommendation(
            Strategy.finetune_lora,
            f"With {conversations} training conversations, LoRA's small adapters learn the "
            "answers' form without overwriting what the model knows; training every layer "
            "would mostly memorise them.",
            wants_probe=False,
        )
    if parameters is None:  # a Hub id: its size is unknown until it is downloaded
        return Recommendation(
            Strategy.finetune_lora,
            f"{conversations} training conversations on a model of unknown size: LoRA "
            "adapts it in a fraction of the memory whatever its size turns out to be.",
            wants_probe=False,
        )
    size = f"{parameters / 1e6:.0f}M-parameter"
    if on_gpu and parameters <= FULL_ON_GPU_UP_TO:
        return Recommendation(
            Strategy.finetune_full,
            f"{conversations} training conversations and a {size} model that fits a GPU "
            "with its optimizer state (about 16 bytes a parameter): every layer can adapt.",
            wants_probe=False,
        )
    if on_gpu:
        return Recommendation(
            Strategy.finetune_lora,
            f"A {size} model on a GPU: LoRA adapters tune it with a fraction of the "
            "optimizer memory that training all layers would need.",
            wants_probe=False,
        )
    if parameters >= LORA_ON_CPU_FROM:
        return Recommendation(
            Strategy.finetune_lora,
            f"A {size} model on a CPU: LoRA trains well under 1 % of its weights, so "
            "each step's update and the optimizer's memory stay small.",
            wants_probe=False,
        )
    return Recommendation(
        Strategy.transfer_top_k,
        f"{conversations} training conversations for a small ({size}) model on a CPU: "
        "training only the top layers keeps each step affordable while the layers nearest "
        "the answers adapt.",
        wants_probe=False,
    )


def recommend_for(dataset: Dataset, model: ModelEntry, device: Device) -> Recommendation:
    """The rule on what the web knows before a job runs: the stored class (or label)
    counts and the split the job will make (the worker decides again with exact counts and
    a probe)."""
    counts = dataset.report.get("class_counts", {})
    parts = dataset.report.get("parts", {})
    held_out = (0.0 if parts.get("validation") else VALIDATION_FRACTION) + (
        0.0 if parts.get("test") else TEST_FRACTION
    )
    keep = 1.0 - held_out
    rows = int(dataset.num_rows * keep)
    return recommend(
        train_rows=rows,
        min_per_class=int(min(counts.values(), default=0) * keep) if counts else rows,
        num_classes=len(counts),
        model_parameters=model.parameters,
        on_gpu=device is Device.gpu,
        task=dataset.task,
    )
