"""Creating image datasets from ZIPs of class folders, and reading them back.

upload (a ZIP, stored as <id>/train.zip) → archives.extract_zip (safe: no path escape, no
bombs) → images.scan_class_folders (per-file checks: format, pixel cap, corrupt files skipped
with their reason) → report → the dataset folder:
    <id>/train/<class>/<file>          as extracted (likewise validation/, test/)
    <id>/images.json                   the manifest: every usable image, part by part
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
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image

from app.config import Settings
from app.datasets.archives import ArchiveLimits, extract_zip
from app.datasets.image_reading import draft
from app.datasets.images import ImageInfo, image_report, scan_class_folders
from app.datasets.uploads import StoredUpload
from app.datasets.validation import DatasetInvalid, Issue

log = logging.getLogger("tuneboard.datasets")
MANIFEST = "images.json"
THUMBNAIL_PX = 160
PREVIEW_PER_CLASS = 8
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


def _check_parts(
    scanned: dict[str, tuple[list[ImageInfo], list[Any]]],
) -> dict[str, Any]:
    """The training part's report, with errors from any part; raises DatasetInvalid."""
    reports = {name: image_report(images, issues) for name, (images, issues) in scanned.items()}
    summary = reports["train"]
    train_classes = set(summary["class_counts"])
    errors = [Issue(**e) for e in summary["errors"]]
    for name, report in reports.items():
        if name == "train":
            continue
        errors += [
            Issue(e["code"], f"{name} archive: {e['message']}", e.get("lines", []))
            for e in report["errors"]
            if e["code"] != "one_class"
        ]
        unseen = sorted(set(report["class_counts"]) - train_classes)
        if unseen:
            errors.append(
                Issue(
                    "unseen_labels",
                    f"the {name} archive has class folders the training archive lacks: "
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
    """The first few images of each class, by manifest number, for the thumbnail grid."""
    shown: Counter[str] = Counter()
    rows = []
    for number, image in enumerate(images):
        if shown[image.label] < PREVIEW_PER_CLASS:
            shown[image.label] += 1
            rows.append({"index": number, "label": image.label, "path": image.path})
    return rows


def examine_images(
    folder: Path,
    parts: list[str],
    settings: Settings,
    on_progress: Callable[[str, int, float], None] | None = None,
) -> dict[str, Any]:
    """Extract the stored ZIPs of class folders (<folder>/<part>.zip), check every image and
    lay them out as above, with the preview's thumbnails made; returns the dataset's fields.
    Raises ArchiveError or DatasetInvalid, leaving nothing extracted. The ZIPs stay until the
    caller has recorded the dataset (drop_archives), so a check cut short can run again."""
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
    try:
        scanned = {}
        for part in (p for p in PARTS if p in parts):
            files = extract_zip(folder / f"{part}.zip", staging / part, archive_limits(settings))
            progress = partial(on_progress, part) if on_progress else None
            images, issues = scan_class_folders(
                staging / part, files, settings.max_image_pixels, progress
            )
            # Paths relative to the dataset folder, which will hold this part's folder.
            scanned[part] = (
                [
                    ImageInfo(f"{part}/{i.path}", i.label, i.sha256, i.width, i.height, i.format)
                    for i in images
                ],
                issues,
            )
        summary = _check_parts(scanned)
        manifest = {part: [asdict(i) for i in images] for part, (images, _) in scanned.items()}
        for part in scanned:
            shutil.rmtree(folder / part, ignore_errors=True)  # from a check that was killed
            (staging / part).rename(folder / part)
        (folder / MANIFEST).write_text(json.dumps(manifest))
        preview = _preview([image for images, _ in scanned.values() for image in images])
        for row in preview:
            _try_thumbnail(folder, row["index"])
        return {
            "files": {part: part for part in scanned},
            "num_rows": summary["num_rows"],
            "task": "classification",  # class folders: one class per image
            "label_separator": None,
            "label_names": sorted(summary["class_counts"]),
            "report": summary,
            "preview": preview,
        }
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
