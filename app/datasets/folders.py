"""Where a dataset's files live: one folder per dataset id under the data directory, found
by id alone (never by a path from a request). The one place that spells the layout.

    <datasets_dir>/<id>/
      <part>.<format>   each uploaded part as stored ("train.csv", "test.parquet"): the
                        names are in Dataset.files, given by checking.accept_upload
      images.json       image datasets: the manifest (image_datasets.MANIFEST), the images
                        themselves and their thumbnails
"""

from __future__ import annotations

from pathlib import Path

from app.config import Settings


def dataset_folder(settings: Settings, dataset_id: int) -> Path:
    return settings.datasets_dir / str(int(dataset_id))


def stored_name(part: str, file_format: str) -> str:
    """The file a part of an upload is stored as."""
    return f"{part}.{file_format}"


def part_paths(settings: Settings, dataset_id: int, files: dict[str, str]) -> dict[str, Path]:
    """Each stored part's path, from Dataset.files."""
    folder = dataset_folder(settings, dataset_id)
    return {part: folder / name for part, name in files.items()}
