"""The strategies and every setting a job takes, in one place: each strategy's name, title
and help; each setting's name, type, default (per strategy and per modality where they
differ), limits, label and help text.

`TrainParams` below is the list: one field per setting, its metadata made by `setting()`.
Everything else is derived from it, so adding a setting is one field here:
  - the API's `JobParams` (app/jobs/params.py builds the pydantic model from `SETTINGS`);
  - the new-job form (templates/jobs/new.html renders `SETTINGS`, with their limits,
    labels, help and placeholders);
  - the worker's spec check (`check_params`), which enforces the same limits;
  - the per-strategy defaults a job is given when it is queued (`strategy_defaults`).
Torch-free, so the web process and the worker read the same table.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any, get_type_hints

# Strategy names, as the API spells them (app/jobs/strategies.py's Strategy values).
TRANSFER_FROZEN = "transfer_frozen"  # a new head on cached backbone features
TRANSFER_TOP_K = "transfer_top_k"  # the top k encoder blocks + head; the rest frozen
FINETUNE_FULL = "finetune_full"  # every parameter
FINETUNE_LORA = "finetune_lora"  # low-rank adapters (PEFT) + head; exported merged
LP_FT = "lp_ft"  # linear probe on cached features, then every parameter from that head
STRATEGIES = (TRANSFER_FROZEN, TRANSFER_TOP_K, FINETUNE_FULL, FINETUNE_LORA, LP_FT)
AUTO = "auto"  # resolved to one of the above when the job starts (app/jobs/recommend.py)
# What each strategy is called and means to a user: the form, the job pages and the docs.
STRATEGY_TEXT: dict[str, tuple[str, str]] = {
    TRANSFER_FROZEN: (
        "Transfer learning — frozen features",
        "The backbone runs once per example and is cached; a new head is fitted on it to "
        "convergence. Seconds to minutes; the strong baseline to run first.",
    ),
    TRANSFER_TOP_K: (
        "Transfer learning — top k layers",
        "Embeddings and lower layers stay frozen; the top k layers and the head train. "
        "Cheaper than full fine-tuning, adapts the features that matter most.",
    ),
    FINETUNE_FULL: (
        "Fine-tuning — all layers",
        "Every weight trains. Slowest; usually the most accurate with thousands of examples.",
    ),
    FINETUNE_LORA: (
        "Fine-tuning — LoRA adapters",
        "Small low-rank adapters (PEFT) and the head train; the export has the adapters "
        "merged in. Little optimizer memory: good for big models on GPUs.",
    ),
    LP_FT: (
        "LP-FT — probe, then fine-tune",
        "The frozen-features head is fitted first, then all layers train from that head, so "
        "early updates do not wreck the pretrained features.",
    ),
    AUTO: (
        "Auto — recommend one for this data",
        "Picks one of the above from the data size, examples per class, the model, the "
        "device and a quick probe, and says why.",
    ),
}
# Frozen features fit their head to convergence (head_fit.py): no steps, so none of the
# settings that shape steps apply to them.
STEPPING = (TRANSFER_TOP_K, FINETUNE_FULL, FINETUNE_LORA, LP_FT)


@dataclass(frozen=True)
class Setting:
    """What the API, the form and the spec check know of one setting."""

    label: str
    help: str
    minimum: float | None = None
    maximum: float | None = None
    # The bound itself is refused (a rate above 0, a dropout below 1).
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    per_strategy: dict[str, Any] | None = None  # defaults that differ by strategy
    per_image_strategy: dict[str, Any] | None = None  # … and for image models
    per_task: dict[str, Any] | None = None  # defaults that differ by the dataset's task
    strategies: tuple[str, ...] = STRATEGIES  # the strategies that read it
    placeholder: str = ""  # what the empty form field shows (default: the default)
    max_items: int | None = None  # lists
    choices: tuple[str, ...] | None = None  # a closed set of names
    tasks: tuple[str, ...] | None = None  # the tasks that read it (None: every task)


def setting(default: Any, **meta: Any) -> Any:
    """A TrainParams field whose metadata is its Setting."""
    return field(default=default, metadata={"setting": Setting(**meta)})


# Steps that update pretrained weights must be small, or they wreck them. Training only the
# top blocks disturbs less, so it can go a little faster; LoRA's adapters start at zero and
# are scaled by alpha/rank, so they need a larger rate to move at all. For lp_ft the rate is
# the fine-tuning stage's. ImageNet CNNs take larger fine-tuning steps than transformers:
# one to three epochs of full fine-tuning of EfficientNet-Lite0 on 500 MNIST digits reached
# 0.92 test accuracy at 5e-5, 0.94 at 3e-4 and 0.90 at 1e-3 (3 epochs; batch-norm statistics
# kept, see loop.py).
LEARNING_RATES = {TRANSFER_TOP_K: 1e-4, FINETUNE_FULL: 5e-5, FINETUNE_LORA: 5e-4, LP_FT: 5e-5}
IMAGE_LEARNING_RATES = {TRANSFER_TOP_K: 3e-4, FINETUNE_FULL: 3e-4, FINETUNE_LORA: 1e-3, LP_FT: 3e-4}


@dataclass(frozen=True)
class TrainParams:
    epochs: int = setting(
        3,
        label="Epochs",
        help="Passes over the training rows.",
        minimum=1,
        maximum=200,
        per_strategy={TRANSFER_TOP_K: 4, FINETUNE_FULL: 3, FINETUNE_LORA: 5, LP_FT: 3},
        strategies=STEPPING,
        placeholder="3 full / 4 top k / 5 LoRA",
    )
    batch_size: int = setting(
        16,
        label="Batch size",
        help="Rows per training step (and twice that per features or evaluation pass). "
        "16 suits a CPU; on a GPU raise it (64–256) until memory or accuracy says stop.",
        minimum=1,
        maximum=1024,
    )
    learning_rate: float | None = setting(
        None,
        label="Learning rate",
        help="Peak rate of the linear warmup and decay; the default depends on the strategy "
        "and on whether the model reads text or images.",
        minimum=0,
        exclusive_minimum=True,
        maximum=1,
        per_strategy=LEARNING_RATES,
        per_image_strategy=IMAGE_LEARNING_RATES,
        strategies=STEPPING,
        placeholder="5e-5 full (3e-4 images)",
    )
    max_length: int = setting(
        128,
        label="Max tokens per text",
        help="Longer texts are cut to this many tokens (encoders read at most 512; for "
        "generation, prompt and response together, and the dataset report suggests one).",
        minimum=8,
        maximum=4096,
        per_task={"generation": 512},
        placeholder="128 (generation: 512)",
    )
    seed: int = setting(
        42,
        label="Seed",
        help="Fixes the split, the new head's start and the batch order.",
        minimum=0,
        maximum=2**31 - 1,
    )
    weight_decay: float = setting(
        0.01,
        label="Weight decay",
        help="AdamW's decay of weight matrices (not of biases and norms).",
        minimum=0,
        maximum=1,
        strategies=STEPPING,
    )
    warmup_ratio: float = setting(
        0.06,
        label="Warmup share",
        help="Share of the steps over which the rate rises linearly from zero.",
        minimum=0,
        maximum=1,
        exclusive_maximum=True,
        strategies=STEPPING,
    )
    label_smoothing: float = setting(
        0.0,
        label="Label smoothing",
        help="Train towards (1 − ε) on the true class and ε spread over all classes: softer, "
        "better-calibrated answers when labels are noisy (0: off).",
        minimum=0,
        maximum=1,
        exclusive_maximum=True,
        strategies=STEPPING,
    )
    # Early stopping on the task's validation headline (tasks/): stop after this many epochs
    # without a better one (None: run every epoch). The best epoch is what gets tested and
    # exported either way.
    patience: int | None = setting(
        None,
        label="Early-stopping patience (epochs)",
        help="Stop after this many epochs without a better validation headline score "
        "(macro-F1; a regression's chosen metric; entity F1) (empty: off).",
        minimum=1,
        maximum=200,
        strategies=STEPPING,
        placeholder="off",
    )
    gradient_accumulation: int = setting(
        1,
        label="Gradient accumulation steps",
        help="Batches whose gradients add up before each optimizer step: the effective "
        "batch is batch size × this, in the memory of one batch.",
        minimum=1,
        maximum=256,
        strategies=STEPPING,
    )
    gradient_checkpointing: bool = setting(
        False,
        label="Gradient checkpointing",
        help="Recompute each block's activations in the backward pass instead of keeping "
        "them: about a third more compute for much less memory on long sequences.",
        strategies=STEPPING,
        tasks=("generation",),
        placeholder="off",
    )
    # Data parallelism (worker/training/distributed.py): the batch above is split across the
    # devices, so the run's maths (and its checkpoint) do not depend on how many there are.
    devices: int = setting(
        1,
        label="Devices",
        help="GPUs this job trains on at once, one DistributedDataParallel process each. "
        "Every step's batch is split among them, so the effective batch size and the "
        "learning rate stay as set and the steps get faster; raise the batch size to give "
        "each device more rows. Offered when a live worker has more than one device.",
        minimum=1,
        maximum=64,
        strategies=STEPPING,
    )
    top_k: int | None = setting(
        None,
        label="Top k layers to train",
        help="transfer_top_k: the blocks that train (empty: a third of them, at least one).",
        minimum=1,
        maximum=96,
        strategies=(TRANSFER_TOP_K,),
        placeholder="a third of the layers",
    )
    lora_rank: int = setting(
        8,
        label="LoRA rank",
        help="Rank of each adapter.",
        minimum=1,
        maximum=256,
        strategies=(FINETUNE_LORA,),
    )
    lora_alpha: int = setting(
        16,
        label="LoRA alpha",
        help="Adapters are scaled by alpha / rank.",
        minimum=1,
        maximum=1024,
        strategies=(FINETUNE_LORA,),
    )
    lora_dropout: float = setting(
        0.1,
        label="LoRA dropout",
        help="Dropout on the adapters' input.",
        minimum=0,
        maximum=1,
        exclusive_maximum=True,
        strategies=(FINETUNE_LORA,),
    )
    # None: the architecture's defaults (text_model.LAYOUTS, image_model's LoRA targets)
    lora_target_modules: tuple[str, ...] | None = setting(
        None,
        label="LoRA target modules",
        help="Module names to adapt, comma-separated (empty: attention query/value for "
        "encoders, every projection of each block for language models, pointwise "
        "convolutions for the CNNs).",
        strategies=(FINETUNE_LORA,),
        placeholder="query, value",
        max_items=16,
    )
    # What ranks a regression's epochs and runs (tasks/regression.py HEADLINES).
    regression_metric: str = setting(
        "mae",
        label="Headline metric",
        help="Regression: the score that picks the best epoch, stops early and ranks runs. "
        "MAE and RMSE: lower is better; R² and Spearman ρ: higher is better.",
        choices=("mae", "rmse", "r2", "spearman"),
        tasks=("regression",),
    )
    # Images: random resized crops and flips of the training rows. None: on wherever the
    # backbone trains, off for a head on cached features (a fresh crop every epoch would need
    # a fresh forward pass, which is what the cache exists to avoid).
    augment: bool | None = setting(
        None,
        label="Augment training images",
        help="Random resized crops and horizontal flips of training images. Default: on "
        "where the backbone trains, off for frozen features (each augmented image would "
        "need a fresh backbone pass, defeating the feature cache).",
        placeholder="default: on when the backbone trains",
        # Image datasets hold these tasks; text ignores the setting, so generation and
        # entity tagging (text only) are not shown it.
        tasks=("classification", "multi_label", "regression"),
    )

    def __post_init__(self) -> None:
        # Params arrive from JSON, where a tuple comes back as a list.
        if self.lora_target_modules is not None:
            object.__setattr__(self, "lora_target_modules", tuple(self.lora_target_modules))

    def learning_rate_for(self, strategy: str, *, images: bool = False) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return (IMAGE_LEARNING_RATES if images else LEARNING_RATES)[strategy]


@dataclass(frozen=True)
class JobSetting:
    """One setting as the API and the form see it."""

    name: str
    annotation: Any  # the field's type, resolved (int, float | None, …)
    default: Any
    setting: Setting


_TYPES = get_type_hints(TrainParams)
SETTINGS: tuple[JobSetting, ...] = tuple(
    JobSetting(
        f.name,
        _TYPES[f.name],
        f.default if f.default is not MISSING else None,
        f.metadata["setting"],
    )
    for f in fields(TrainParams)
)


def strategy_defaults(strategy: str, task: str | None = None) -> dict[str, Any]:
    """Defaults that depend on the strategy (and the dataset's task) alone, filled in when a
    job is queued (so its page shows them). Those that depend on the model's modality too
    (the learning rate) are resolved by the worker: TrainParams.learning_rate_for."""
    by_strategy = {
        s.name: s.setting.per_strategy[strategy]
        for s in SETTINGS
        if s.setting.per_strategy
        and strategy in s.setting.per_strategy
        and s.setting.per_image_strategy is None
    }
    # A setting with per-task defaults takes its plain default for the other tasks.
    by_task = {
        s.name: s.setting.per_task.get(task or "", s.default)
        for s in SETTINGS
        if s.setting.per_task
    }
    return by_strategy | by_task


def check_params(params: TrainParams) -> None:
    """The limits the API enforces, enforced again on the spec (raises ValueError)."""
    for one in SETTINGS:
        value = getattr(params, one.name)
        if value is None or isinstance(value, bool):
            continue
        s = one.setting
        if s.choices is not None:
            if value not in s.choices:
                raise ValueError(f"{one.name} is {value!r}; expected one of {', '.join(s.choices)}")
            continue
        if isinstance(value, tuple):
            if not value:
                raise ValueError(f"{one.name} is empty; leave it unset for the default")
            continue
        low = s.minimum is not None and (
            value <= s.minimum if s.exclusive_minimum else value < s.minimum
        )
        high = s.maximum is not None and (
            value >= s.maximum if s.exclusive_maximum else value > s.maximum
        )
        if low or high:
            raise ValueError(f"{one.name} is {value}; {describe_limits(s)}")


def describe_limits(s: Setting) -> str:
    parts = []
    if s.minimum is not None:
        parts.append(f"{'above' if s.exclusive_minimum else 'at least'} {s.minimum:g}")
    if s.maximum is not None:
        parts.append(f"{'below' if s.exclusive_maximum else 'at most'} {s.maximum:g}")
    return "it must be " + " and ".join(parts)
