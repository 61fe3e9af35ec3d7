"""What a training job is given: the data, the model, the strategy and the settings.

Plain frozen dataclasses with no torch import, so the worker can build a spec from database
rows without loading any training code, and a spec can be written next to the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PREVIEW_CHARS = 500  # of each text in validation_predictions.json: enough to judge a mistake

TRANSFER_FROZEN = "transfer_frozen"  # a new head on cached backbone features
TRANSFER_TOP_K = "transfer_top_k"  # the top k encoder blocks + head; the rest frozen
FINETUNE_FULL = "finetune_full"  # every parameter
FINETUNE_LORA = "finetune_lora"  # low-rank adapters (PEFT) + head; exported merged
LP_FT = "lp_ft"  # linear probe on cached features, then every parameter from that head
STRATEGIES = (TRANSFER_FROZEN, TRANSFER_TOP_K, FINETUNE_FULL, FINETUNE_LORA, LP_FT)

# Steps that update pretrained weights must be small, or they wreck them. Training only the
# top blocks disturbs less, so it can go a little faster; LoRA's adapters start at zero and
# are scaled by alpha/rank, so they need a larger rate to move at all. For lp_ft the rate is
# the fine-tuning stage's. Frozen features (and lp_ft's probe) have no rate: their head is
# fitted to convergence (head_fit.py).
DEFAULT_LEARNING_RATES = {
    TRANSFER_TOP_K: 1e-4,
    FINETUNE_FULL: 5e-5,
    FINETUNE_LORA: 5e-4,
    LP_FT: 5e-5,
}
# ImageNet CNNs take larger fine-tuning steps than transformers: one to three epochs of full
# fine-tuning of EfficientNet-Lite0 on 500 MNIST digits reached 0.92 test accuracy at 5e-5,
# 0.94 at 3e-4 and 0.90 at 1e-3 (3 epochs; batch-norm statistics kept, see loop.py).
IMAGE_LEARNING_RATES = {
    **DEFAULT_LEARNING_RATES,
    TRANSFER_TOP_K: 3e-4,
    FINETUNE_FULL: 3e-4,
    FINETUNE_LORA: 1e-3,
    LP_FT: 3e-4,
}


@dataclass(frozen=True)
class TextExamples:
    texts: list[str]
    text_pairs: list[str] | None
    labels: list[int]  # ids into TrainSpec.label_names

    def __len__(self) -> int:
        return len(self.texts)

    def describe(self, row: int) -> dict[str, str]:
        """What the job page shows of one row next to a wrong prediction."""
        shown = {"text": self.texts[row][:PREVIEW_CHARS]}
        if self.text_pairs is not None:
            shown["text_pair"] = self.text_pairs[row][:PREVIEW_CHARS]
        return shown


@dataclass(frozen=True)
class ImageExamples:
    root: Path  # the dataset's folder; paths are relative to it
    paths: list[str]
    labels: list[int]  # ids into TrainSpec.label_names

    def __len__(self) -> int:
        return len(self.paths)

    def describe(self, row: int) -> dict[str, str]:
        return {"text": self.paths[row]}


Examples = TextExamples | ImageExamples


@dataclass(frozen=True)
class TrainParams:
    epochs: int = 3
    batch_size: int = 16
    learning_rate: float | None = None  # None: the strategy's default (DEFAULT_LEARNING_RATES)
    max_length: int = 128
    seed: int = 42
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    # Early stopping on validation macro-F1: stop after this many epochs without a better
    # one (None: run every epoch). The best epoch is what gets tested and exported either way.
    # Epochs, learning rate, warmup and patience do not apply to frozen features.
    patience: int | None = None
    top_k: int | None = None  # transfer_top_k: blocks that train; None: a third of them (≥ 1)
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    # None: the architecture's attention query/value projections (text_model.LAYOUTS)
    lora_target_modules: tuple[str, ...] | None = None
    # Images: random resized crops and flips of the training rows. None: on wherever the
    # backbone trains, off for a head on cached features (a fresh crop every epoch would need
    # a fresh forward pass, which is what the cache exists to avoid).
    augment: bool | None = None

    def __post_init__(self) -> None:
        # Params arrive from JSON, where a tuple comes back as a list.
        if self.lora_target_modules is not None:
            object.__setattr__(self, "lora_target_modules", tuple(self.lora_target_modules))

    def learning_rate_for(self, strategy: str, *, images: bool = False) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return (IMAGE_LEARNING_RATES if images else DEFAULT_LEARNING_RATES)[strategy]


@dataclass(frozen=True)
class TrainSpec:
    job_id: int
    model_id: str  # catalogue id, e.g. "minilm-l6": part of the feature-cache key and model card
    # A local Hugging Face model folder (config.json, model.safetensors, tokenizer or image
    # processor), or for a packaged plain-PyTorch vision model its checkpoint file.
    model_path: str
    strategy: str  # one of STRATEGIES
    label_names: list[str]
    examples: Examples  # all rows of the dataset, in file order
    train_idx: list[int]
    validation_idx: list[int]
    test_idx: list[int]
    dataset_name: str
    dataset_fingerprint: str  # content hash of the dataset files + column choice
    params: TrainParams
    output_dir: Path  # the job's folder
    cache_dir: Path  # feature cache shared by all jobs
    device: str = "cpu"  # "cpu" | "cuda" | "auto"
    torch_threads: int = 0  # 0: leave torch's default
    # The packaged plain-PyTorch vision architecture (image_modeling.ARCHITECTURES) that
    # model_path's checkpoint is for; None for Hugging Face folders, whose config says.
    architecture: str | None = None
    # Besides the end of every epoch, a checkpoint is saved mid-epoch this often.
    checkpoint_every_seconds: float = 600.0

    def check(self) -> None:
        """Fail before any model is loaded, with a message a user can act on."""
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; expected one of {STRATEGIES}")
        if len(self.label_names) < 2:
            raise ValueError("a classifier needs at least two labels")
        n = len(self.examples)
        if len(self.examples.labels) != n:
            raise ValueError(f"{n} examples but {len(self.examples.labels)} labels")
        pairs = getattr(self.examples, "text_pairs", None)
        if pairs is not None and len(pairs) != n:
            raise ValueError(f"{n} texts but {len(pairs)} text pairs")
        bad = [y for y in self.examples.labels if not 0 <= y < len(self.label_names)]
        if bad:
            raise ValueError(f"label id {bad[0]} is outside 0..{len(self.label_names) - 1}")
        for name in ("train_idx", "validation_idx", "test_idx"):
            idx = getattr(self, name)
            if not idx:
                raise ValueError(f"{name} is empty: training needs train, validation and test rows")
            if min(idx) < 0 or max(idx) >= n:
                raise ValueError(f"{name} holds an index outside 0..{n - 1}")
        p = self.params
        if p.epochs < 1 or p.batch_size < 1 or p.max_length < 2:
            raise ValueError("epochs and batch_size must be ≥ 1 and max_length ≥ 2")
        if p.patience is not None and p.patience < 1:
            raise ValueError("patience must be ≥ 1 (or unset, for no early stopping)")
        if p.top_k is not None and p.top_k < 1:
            raise ValueError("top_k must be ≥ 1 (or unset, for a third of the blocks)")
        if p.lora_rank < 1 or p.lora_alpha < 1 or not 0 <= p.lora_dropout < 1:
            raise ValueError("lora_rank and lora_alpha must be ≥ 1, lora_dropout in [0, 1)")
        if p.lora_target_modules is not None and not p.lora_target_modules:
            raise ValueError("lora_target_modules is empty; leave it unset for the default")
