"""What a job's folder holds, by name: the one place that spells its layout.

The folder is found from the job's id by app/jobs/artifacts.job_dir (and handed to training
as TrainSpec.output_dir); these functions take that folder.

    checkpoint.pt                   the state to resume from (checkpoint.py), until published
    validation_predictions.json     each validation row's true and predicted label
    samples.json                    generation: a few validation prompts answered by the base
                                    model and after each epoch (generation_samples.py)
    adapter/                        LoRA: the trained adapters in PEFT's format, before merging
    export/                         what the ZIP is made from (export.py)
      model/                        the weights, as a user loads them
    export.zip                      the download, present only complete
    ranks/                          a job on several devices (worker/ddp_job.py):
      ranks.log                     torchrun's and the ranks' output
      rank-<r>.json                 how each rank ended (succeeded, cancelled, failed)
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINT = "checkpoint.pt"
VALIDATION_PREDICTIONS = "validation_predictions.json"
SAMPLES = "samples.json"
ADAPTER_DIR = "adapter"
EXPORT_DIR = "export"
EXPORT_ZIP = "export.zip"
RANKS_DIR = "ranks"


def checkpoint(folder: Path) -> Path:
    return folder / CHECKPOINT


def validation_predictions(folder: Path) -> Path:
    return folder / VALIDATION_PREDICTIONS


def samples(folder: Path) -> Path:
    return folder / SAMPLES


def adapter_dir(folder: Path) -> Path:
    """LoRA adapters saved before they are merged; export.py copies them into the export."""
    return folder / ADAPTER_DIR


def export_dir(folder: Path) -> Path:
    return folder / EXPORT_DIR


def exported_model(folder: Path) -> Path:
    """The model folder inside the export: what the playground loads and users download."""
    return export_dir(folder) / "model"


def export_zip(folder: Path) -> Path:
    return folder / EXPORT_ZIP


def ranks_dir(folder: Path) -> Path:
    """A data-parallel run's process output and each rank's outcome."""
    return folder / RANKS_DIR


def rank_outcome(folder: Path, rank: int) -> Path:
    return ranks_dir(folder) / f"rank-{rank}.json"
