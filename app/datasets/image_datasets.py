"""Creating image datasets from ZIPs of images, and reading them back.

upload (a ZIP, stored as <id>/train.zip) → archives.extract_zip (safe: no path escape, no
bombs) → images.scan_class_folders (per-file checks: format, pixel cap, corrupt files skipped
with their reason), or, for a ZIP with a labels file, image_labels.scan_labelled (any task)
→ report → the dataset folder:
    <id>/train/<class>/<file>          as extracted (likewise validation/, test/)
    <id>/images.json                   the manifest: every usable image, part by part, with
                                       its label as the task reads it (a class name, a
                                       list of label names, a number)
    <id>/thumbs/<n>.webp               thumbnails: the preview's made by the check, others
                                       on first request
Images are addressed by their number in the manifest, never by a path from a request.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image

from app.config import Settings
from app.datasets.archives import ArchiveLimits, extract_zip
from app.datasets.image_label_report import labelled_report
from app.datasets.image_labels import LABELS_FILES, find_labels_file, scan_labelled
from app.datasets.image_reading import draft
from app.datasets.images import ImageInfo, image_report, scan_class_folders
from app.datasets.parsing import ParseError
from app.datasets.uploads import StoredUpload
from app.datasets.validation import DatasetInvalid, Issue

log = logging.getLogger("tuneboard.datasets")
MANIFEST = "images.json"
THUMBNAIL_PX = 160
PREVIEW_PER_CLASS = 8
PREVIEW_UNGROUPED = 24  # multi-label and regression: the first images, whatever their labels
PARTS = ("train", "validation", "test")


def is_zip(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(4) in (b"PK\x03\x04", b"PK\x05\x06")  # a member, or an empty archive


def is_image_archive(upload: StoredUpload) -> bool:
    """A ZIP of class folders: named .zip, or a ZIP by its bytes with no extension. Other
    ZIP-based files (.docx, .xlsx) are not image archives: the table reader says what to
    upload instead."""
    suffix = Path(upload.original_filename).suffix.lower()
    return suffix == ".zip" or (suffix == "" and is_zip(upload.path))


def archive_limits(settings: Settings) -> ArchiveLimits:
    return ArchiveLimits(
        max_entries=settings.max_archive_entries,
        max_total_bytes=settings.max_archive_bytes,
        max_ratio=settings.max_archive_ratio,
    )


def _check_parts(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The training part's report, with errors from any part; raises DatasetInvalid."""
    summary = reports["train"]
    train_classes = set(summary["class_counts"])
    errors = [Issue(**e) for e in summary["errors"]]
    for name, report in reports.items():
        if name == "train":
            continue
        errors += [
            Issue(e["code"], f"{name} archive: {e['message']}", e.get("lines", []))
            for e in report["errors"]
            if e["code"] not in ("one_class", "one_label", "constant_target")
        ]
        unseen = sorted(set(report["class_counts"]) - train_classes)
        if unseen:
            what = "labels" if "labels_file" in report else "class folders"
            errors.append(
                Issue(
                    "unseen_labels",
                    f"the {name} archive has {what} the training archive lacks: "
                    f"{', '.join(unseen[:10])}; add training images for them",
                )
            )
        summary["warnings"] += [
            {**w, "message": f"{name} archive: {w['message']}"} for w in report["warnings"]
        ]
    summary["errors"] = [asdict(e) for e in errors]
    summary["parts"] = {name: report["num_rows"] for name, report in reports.items()}
    if errors:
        raise DatasetInvalid(errors, summary)
    return summary


def _preview(images: list[ImageInfo]) -> list[dict[str, Any]]:
    """The first few images of each class, by manifest number, for the thumbnail grid; for
    labels that are not one class (lists, numbers), the first few images."""
    shown: Counter[str] = Counter()
    rows = []
    for number, image in enumerate(images):
        group, most = (
            (image.label, PREVIEW_PER_CLASS)
            if isinstance(image.label, str)
            else ("", PREVIEW_UNGROUPED)
        )
        if shown[group] < most:
            shown[group] += 1
            rows.append({"index": number, "label": image.label, "path": image.path})
    return rows


class _Form:
    """How a dataset's archives give labels: class folders, or a labels file (the task and
    separator the training archive's was read with, which the other parts' are read with)."""

    def __init__(self, task: str | None, separator: str | None) -> None:
        self.task, self.separator = task, separator
        self.labels_file: bool | None = None  # decided by the training archive
        self.label_column = ""  # the labels file's

    def scan(
        self, root: Path, files: list[str], part: str, max_pixels: int, progress: Any
    ) -> tuple[list[ImageInfo], dict[str, Any]]:
        member = find_labels_file(files)
        if self.labels_file is None:
            self.labels_file = member is not None
        if self.labels_file != (member is not None):
            raise DatasetInvalid([Issue("mixed_archives", self._mixed(part))])
        if member is None:
            if self.task not in (None, "classification"):
                msg = (
                    f"the {self.task} task needs a labels file in the ZIP "
                    f"({' or '.join(LABELS_FILES)}: each image's path and its labels); class "
                    "folders give one class per image"
                )
                raise DatasetInvalid([Issue("no_labels_file", msg)])
            self.task = "classification"  # class folders: one class per image
            images, issues = scan_class_folders(root, files, max_pixels, progress)
            return images, image_report(images, issues)
        scan = scan_labelled(
            root, files, member, max_pixels, progress, task=self.task, separator=self.separator
        )
        self.task, self.separator = scan.choice.task, scan.choice.separator
        self.label_column = scan.choice.label
        return scan.images, labelled_report(scan)

    def _mixed(self, part: str) -> str:
        has, lacks = ("has", "lacks") if self.labels_file else ("lacks", "has")
        return (
            f"the training archive {has} a labels file ({' or '.join(LABELS_FILES)}) but the "
            f"{part} archive {lacks} one; make every archive the same way, all with a labels "
            "file or all as class folders"
        )


def examine_images(
    folder: Path,
    parts: list[str],
    settings: Settings,
    on_progress: Callable[[str, int, float], None] | None = None,
    *,
    task: str | None = None,
    label_separator: str | None = None,
) -> dict[str, Any]:
    """Extract the stored ZIPs (<folder>/<part>.zip: class folders, or images with a labels
    file), check every image and lay them out as above, with the preview's thumbnails made;
    returns the dataset's fields. `task` and `label_separator`: as the upload named them
    (None: detected from a labels file). Raises ArchiveError or DatasetInvalid (ParseError
    for a task images cannot have), leaving nothing extracted. The ZIPs stay until the
    caller has recorded the dataset (drop_archives), so a check cut short can run again."""
    if task == "token_classification":  # a table is refused the same way (task_labels.py)
        raise ParseError(
            "entity tagging reads tagged words (a CoNLL file, or JSONL with tokens and tags "
            "or text and spans), not images; upload such a file, or choose another task",
            column="task",
        )
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
    form = _Form(task, label_separator)
    try:
        scanned, reports = {}, {}
        for part in (p for p in PARTS if p in parts):
            files = extract_zip(folder / f"{part}.zip", staging / part, archive_limits(settings))
            progress = partial(on_progress, part) if on_progress else None
            images, reports[part] = form.scan(
                staging / part, files, part, settings.max_image_pixels, progress
            )
            # Paths relative to the dataset folder, which will hold this part's folder.
            scanned[part] = [replace(image, path=f"{part}/{image.path}") for image in images]
        summary = _check_parts(reports)
        manifest = {part: [asdict(i) for i in images] for part, images in scanned.items()}
        for part in scanned:
            shutil.rmtree(folder / part, ignore_errors=True)  # from a check that was killed
            (staging / part).rename(folder / part)
        (folder / MANIFEST).write_text(json.dumps(manifest))
        preview = _preview([image for images in scanned.values() for image in images])
        for row in preview:
            _try_thumbnail(folder, row["index"])
        labels = summary.get("labels") or {"names": sorted(summary["class_counts"])}
        return {
            "files": {part: part for part in scanned},
            "num_rows": summary["num_rows"],
            "task": form.task,
            "label_separator": form.separator,
            "label_names": labels["names"],
            "report": summary,
            "preview": preview,
        } | ({"label_column": form.label_column} if form.labels_file else {})
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def drop_archives(folder: Path) -> None:
    """The uploaded ZIPs, once their images are extracted and recorded."""
    for part in PARTS:
        (folder / f"{part}.zip").unlink(missing_ok=True)


def _try_thumbnail(folder: Path, number: int) -> None:
    """Made ahead for the preview; one that fails here is tried again when asked for."""
    try:
        thumbnail(folder, number)
    except Exception:  # noqa: BLE001 - the image passed its checks; a thumbnail is a nicety
        log.warning("no thumbnail for image %s in %s", number, folder, exc_info=True)


def read_manifest(folder: Path) -> dict[str, list[ImageInfo]]:
    data = json.loads((folder / MANIFEST).read_text())
    return {part: [ImageInfo(**row) for row in data[part]] for part in PARTS if part in data}


def image_file(folder: Path, number: int) -> Path | None:
    """The stored file of manifest image `number` (parts in order), or None."""
    if number < 0:
        return None
    for images in read_manifest(folder).values():
        if number < len(images):
            return folder / images[number].path
        number -= len(images)
    return None


def thumbnail(folder: Path, number: int) -> Path | None:
    """A small WebP of image `number`, made once and kept beside the dataset."""
    target = folder / "thumbs" / f"{number}.webp"
    if target.is_file():
        return target
    source = image_file(folder, number)
    if source is None:
        return None
    target.parent.mkdir(exist_ok=True)
    with Image.open(source) as image:
        image.seek(0)  # the first frame of an animated GIF
        draft(image, THUMBNAIL_PX)  # a JPEG decodes at 1/2 to 1/8 scale, never in full
        small = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        # A unique temporary name: two requests for one thumbnail may race.
        partial = target.with_name(f"{number}.{uuid.uuid4().hex}.tmp")
        small.save(partial, "WEBP", quality=80)
        partial.replace(target)
    return target
