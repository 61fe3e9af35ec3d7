"""What a training job is given: the data, the model, the strategy and the settings.

Plain frozen dataclasses with no torch import, so the worker can build a spec from database
rows without loading any training code, and a spec can be written next to the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The strategies and settings live in hyperparameters.py; the names are used from here too.
from worker.training.hyperparameters import (
    FINETUNE_FULL,
    FINETUNE_LORA,
    LP_FT,
    STRATEGIES,
    TRANSFER_FROZEN,
    TRANSFER_TOP_K,
    TrainParams,
    check_params,
)

__all__ = [
    "FINETUNE_FULL",
    "FINETUNE_LORA",
    "LP_FT",
    "STRATEGIES",
    "TRANSFER_FROZEN",
    "TRANSFER_TOP_K",
    "ImageExamples",
    "TextExamples",
    "TokenExamples",
    "ChatExamples",
    "TrainParams",
    "TrainSpec",
]

ENCODER_MAX_LENGTH = 512  # position embeddings of the BERT-family encoders
PREVIEW_CHARS = 500  # of each text in validation_predictions.json: enough to judge a mistake


@dataclass(frozen=True)
class TextExamples:
    texts: list[str]
    text_pairs: list[str] | None
    # As the task reads them (tasks/): class ids into TrainSpec.label_names, lists of such
    # ids (multi-label) or numbers (regression).
    labels: list[Any]

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
    labels: list[Any]  # as TextExamples.labels

    def __len__(self) -> int:
        return len(self.paths)

    def describe(self, row: int) -> dict[str, str]:
        return {"text": self.paths[row]}


@dataclass(frozen=True)
class TokenExamples:
    """Entity tagging: sentences as words, each word's IOB2 tag id (tasks/tagged_text.py)."""

    words: list[list[str]]
    labels: list[list[int]]  # ids into TrainSpec.label_names, one per word

    def __len__(self) -> int:
        return len(self.words)

    def describe(self, row: int) -> dict[str, str]:
        return {"text": " ".join(self.words[row])[:PREVIEW_CHARS]}


@dataclass(frozen=True)
class ChatExamples:
    """Generation: each row a conversation, a list of {"role", "content"} messages
    (system, then user and assistant turns, ending with an assistant turn:
    tasks/conversations.py reads and checks them). The model learns the assistant turns."""

    conversations: list[list[dict[str, str]]]

    def __len__(self) -> int:
        return len(self.conversations)

    @property
    def labels(self) -> list[str]:
        """The reference answers: each conversation's last assistant turn."""
        return [c[-1]["content"] for c in self.conversations]

    def describe(self, row: int) -> dict[str, str]:
        turns = self.conversations[row][:-1]
        prompt = next((m["content"] for m in reversed(turns) if m["role"] == "user"), "")
        return {"text": prompt[:PREVIEW_CHARS]}


Examples = TextExamples | ImageExamples | TokenExamples | ChatExamples


@dataclass(frozen=True)
class TrainSpec:
    job_id: int
    model_id: str  # catalogue id, e.g. "minilm-l6": part of the feature-cache key and model card
    # A local Hugging Face model folder (config.json, model.safetensors, tokenizer or image
    # processor), or for a packaged plain-PyTorch vision model its checkpoint file.
    model_path: str
    strategy: str  # one of STRATEGIES
    # The head's outputs: class names, tag names, or (regression) the target's name.
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
    task: str = "classification"  # tasks.NAMES: what the labels are

    def job_task(self):  # noqa: ANN201 - tasks.JobTask, imported here to keep spec light
        """The task bound to this job's labels and training rows."""
        from worker.training.tasks import get_task

        return get_task(self.task).bind(
            self.examples, self.label_names, self.train_idx, self.params
        )

    def check(self) -> None:
        """Fail before any model is loaded, with a message a user can act on."""
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; expected one of {STRATEGIES}")
        from worker.training.tasks import get_task

        task = get_task(self.task)
        n = len(self.examples)
        if len(self.examples.labels) != n:
            raise ValueError(f"{n} examples but {len(self.examples.labels)} labels")
        pairs = getattr(self.examples, "text_pairs", None)
        if pairs is not None and len(pairs) != n:
            raise ValueError(f"{n} texts but {len(pairs)} text pairs")
        task.check_labels(self.examples.labels, self.label_names)
        for name in ("train_idx", "validation_idx", "test_idx"):
            idx = getattr(self, name)
            if not idx:
                raise ValueError(f"{name} is empty: training needs train, validation and test rows")
            if min(idx) < 0 or max(idx) >= n:
                raise ValueError(f"{name} holds an index outside 0..{n - 1}")
        check_params(self.params)
        if self.task != "generation" and self.params.max_length > ENCODER_MAX_LENGTH:
            raise ValueError(
                f"max_length is {self.params.max_length} but encoders read at most "
                f"{ENCODER_MAX_LENGTH} tokens; longer maximum lengths are for generation"
            )
