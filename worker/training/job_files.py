"""What a job's folder holds, by name: the one place that spells its layout.

The folder is found from the job's id by app/jobs/artifacts.job_dir (and handed to training
as TrainSpec.output_dir); these functions take that folder.

    checkpoint.pt                   the state to resume from (checkpoint.py), until published
    validation_predictions.json     each validation row's true and predicted label
    export/                         what the ZIP is made from (export.py)
      model/                        the weights, as a user loads them
    export.zip                      the download, present only complete
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINT = "checkpoint.pt"
VALIDATION_PREDICTIONS = "validation_predictions.json"
EXPORT_DIR = "export"
EXPORT_ZIP = "export.zip"


def checkpoint(folder: Path) -> Path:
    return folder / CHECKPOINT


def validation_predictions(folder: Path) -> Path:
    return folder / VALIDATION_PREDICTIONS


def export_dir(folder: Path) -> Path:
    return folder / EXPORT_DIR


def exported_model(folder: Path) -> Path:
    """The model folder inside the export: what the playground loads and users download."""
    return export_dir(folder) / "model"


def export_zip(folder: Path) -> Path:
    return folder / EXPORT_ZIP
