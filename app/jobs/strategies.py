"""The adaptation strategies a job can use: names and what they mean to a user. Their
settings and defaults are in worker/training/hyperparameters.py."""

from __future__ import annotations

from enum import StrEnum


class Strategy(StrEnum):
    transfer_frozen = "transfer_frozen"
    transfer_top_k = "transfer_top_k"
    finetune_full = "finetune_full"
    finetune_lora = "finetune_lora"
    lp_ft = "lp_ft"
    auto = "auto"  # resolved to one of the others when the job starts

    @property
    def label(self) -> str:
        return TITLES[self]

    @property
    def help(self) -> str:
        return HELP[self]


CONCRETE: list[Strategy] = [s for s in Strategy if s is not Strategy.auto]

TITLES = {
    Strategy.transfer_frozen: "Transfer learning — frozen features",
    Strategy.transfer_top_k: "Transfer learning — top k layers",
    Strategy.finetune_full: "Fine-tuning — all layers",
    Strategy.finetune_lora: "Fine-tuning — LoRA adapters",
    Strategy.lp_ft: "LP-FT — probe, then fine-tune",
    Strategy.auto: "Auto — recommend one for this data",
}
HELP = {
    Strategy.transfer_frozen: "The backbone runs once per example and is cached; a new head "
    "is fitted on it to convergence. Seconds to minutes; the strong baseline to run first.",
    Strategy.transfer_top_k: "Embeddings and lower layers stay frozen; the top k layers and the "
    "head train. Cheaper than full fine-tuning, adapts the features that matter most.",
    Strategy.finetune_full: "Every weight trains. Slowest; usually the most accurate with "
    "thousands of examples.",
    Strategy.finetune_lora: "Small low-rank adapters (PEFT) and the head train; the export has "
    "the adapters merged in. Little optimizer memory: good for big models on GPUs.",
    Strategy.lp_ft: "A linear probe on frozen features first, then all layers from that head, "
    "so early updates do not wreck the pretrained features.",
    Strategy.auto: "Picks one of the above from the data size, examples per class, the model, "
    "the device and a quick probe, and says why.",
}
