"""Is this folder of images fit to train on? The image counterpart of ``validation``.

Each file is judged on its own: a corrupt or oversized image is listed as skipped, never fatal,
so one bad file does not sink an upload of thousands. The size and format are read from the
header before anything is decoded, so a small file that claims to be enormous costs nothing.

Only Pillow and the standard library are used: this runs in the web process, which never
imports torch.
"""

from __future__ import annotations

import hashlib
import statistics
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image, UnidentifiedImageError

from app.datasets.image_reading import decode_smallest
from app.datasets.validation import Issue, class_warnings

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
DEFAULT_MAX_PIXELS = 40_000_000
MAX_SKIPPED_LISTED = 200  # enough to find the pattern, not a second copy of the upload
MAX_NAMED = 3  # file names quoted in one warning
MAX_REASON_CHARS = 120
PROGRESS_EVERY = 200  # files judged between two progress reports


class ImageRejected(ValueError):
    """One file cannot be used; the message is the reason, shown next to its path."""


# An image's label: its class folder's name; from a labels file (image_labels.py), what
# the dataset's task reads: a class name, a list of label names, or a number.
Label = str | list[str] | float


@dataclass(frozen=True)
class ImageInfo:
    path: str  # relative posix path, as extracted
    label: Label
    sha256: str  # of the file bytes
    width: int
    height: int
    format: str


@dataclass(frozen=True)
class FileIssue:
    path: str
    reason: str  # a sentence: what is wrong and, where it helps, what to do


def inspect_image(path: Path, max_pixels: int) -> tuple[int, int, str]:
    """(width, height, format) of a usable image; ImageRejected for anything else.

    Pillow's own decompression-bomb guard is not relied on: the pixel count is judged here from
    the header, with our limit, before any pixel is decoded.
    """
    # Pillow warns about large images and odd metadata; under an "error" warning filter those
    # would turn a good image into an exception, so they are silenced while we look.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(path) as im:  # lazy: reads the header only
                width, height = im.size
                fmt = im.format or "unknown"
                _check_header(width, height, fmt, max_pixels)
                im.verify()  # structural checks (PNG chunk CRCs and the like)
            # verify() leaves the image unusable, so decoding needs a fresh open.
            with Image.open(path) as im:
                # Every byte decoded (catches truncated and corrupt pixel data), a JPEG at
                # 1/8 scale: a huge photo costs a sixty-fourth of its full-size memory.
                decode_smallest(im)
        except ImageRejected:
            raise
        except Image.DecompressionBombError:
            # Only reached if max_pixels is above Pillow's own hard limit.
            raise ImageRejected(
                f"the image has more pixels than can be opened safely; the limit is "
                f"{max_pixels:,} pixels, so scale it down"
            ) from None
        except Exception as exc:  # Pillow raises OSError, SyntaxError, struct.error, ...
            raise ImageRejected(f"not a readable image: {short_reason(exc, path)}") from exc
    return width, height, fmt


def _check_header(width: int, height: int, fmt: str, max_pixels: int) -> None:
    if fmt not in ALLOWED_FORMATS:
        raise ImageRejected(f"format {fmt} is not supported; convert it to JPEG or PNG")
    if width <= 0 or height <= 0:
        raise ImageRejected(f"not a readable image: its size is {width}×{height}")
    if width * height > max_pixels:
        raise ImageRejected(
            f"{width}×{height} pixels is over the {max_pixels:,}-pixel limit; scale it down"
        )


def short_reason(exc: Exception, path: Path) -> str:
    """Pillow's error as one short line for a person, without server paths."""
    if isinstance(exc, UnidentifiedImageError):
        return "the file is not in any image format Pillow recognises"
    # Pillow's messages often quote the full server-side path; the user knows the file already.
    text = str(exc).replace(str(path), path.name).strip().splitlines()
    reason = text[0] if text else type(exc).__name__
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def judge_file(root: Path, path: str, label: Label, max_pixels: int) -> ImageInfo | FileIssue:
    """The extracted file `root/path` as a usable image with `label`, or why it is skipped."""
    file = root / path
    try:
        width, height, fmt = inspect_image(file, max_pixels)
        digest = _sha256(file)
    except ImageRejected as exc:
        return FileIssue(path, str(exc))
    except OSError as exc:  # vanished or unreadable between the two reads
        return FileIssue(path, f"not a readable image: {short_reason(exc, file)}")
    return ImageInfo(path, label, digest, width, height, fmt)


def _class_parts(files: list[str]) -> dict[str, tuple[str, ...]]:
    """Each file's path parts below the folder that holds the class folders.

    Zipping the parent folder (``pets/cats/1.jpg``) instead of the class folders is the most
    common way to make such an archive, so one shared top folder that itself holds folders is
    taken off.
    """
    parts = {f: PurePosixPath(f).parts for f in files}
    tops = {p[0] for p in parts.values()}
    if len(tops) == 1 and any(len(p) >= 3 for p in parts.values()):
        return {f: p[1:] for f, p in parts.items()}
    return parts


def scan_class_folders(
    root: Path,
    files: list[str],
    max_pixels: int,
    on_progress: Callable[[int, float], None] | None = None,
) -> tuple[list[ImageInfo], list[FileIssue]]:
    """Judge every extracted file under ``root``: usable images by (label, path), and the rest.
    ``on_progress`` hears (files judged, share judged) every PROGRESS_EVERY files."""
    images: list[ImageInfo] = []
    issues: list[FileIssue] = []
    classed = _class_parts(files)
    for done, (path, parts) in enumerate(classed.items(), start=1):
        if on_progress is not None and done % PROGRESS_EVERY == 0:
            on_progress(done, done / len(classed))
        if len(parts) < 2:
            issues.append(
                FileIssue(path, "not inside a class folder; move it into the folder of its class")
            )
            continue
        # Deeper folders (cats/indoor/1.jpg) belong to their first-level class.
        judged = judge_file(root, path, parts[0], max_pixels)
        if isinstance(judged, ImageInfo):
            images.append(judged)
        else:
            issues.append(judged)
    images.sort(key=lambda i: (i.label, i.path))
    issues.sort(key=lambda i: i.path)
    return images, issues


# --- the report ---------------------------------------------------------------------------------


def image_report(images: list[ImageInfo], issues: list[FileIssue]) -> dict[str, Any]:
    """The validation report of an image dataset, shaped like ``validation.Report.to_dict``.

    Errors block training; warnings are shown and training may go ahead.
    """
    counts = Counter(str(image.label) for image in images)  # class folders: names
    errors: list[Issue] = []
    if not counts:
        msg = (
            "no usable image was found; put the images in one folder per class "
            "(cats/001.jpg, dogs/002.jpg, ...) and zip those folders"
        )
        errors.append(Issue("no_usable_rows", msg))
    elif len(counts) == 1:
        msg = (
            f"every usable image is in the class folder '{next(iter(counts))}'; a classifier "
            "needs examples of at least two classes, so add a folder for each other class"
        )
        errors.append(Issue("one_class", msg))
    warnings_ = (
        skipped_warning(issues) + class_warnings(counts, "images") + content_warnings(images)
    )
    return {
        "errors": [asdict(issue) for issue in errors],
        "warnings": [asdict(issue) for issue in warnings_],
        "num_rows": len(images),
        "class_counts": dict(sorted(counts.items())),
        "image_size": size_stats(images),
        "skipped_files": [asdict(issue) for issue in issues[:MAX_SKIPPED_LISTED]],
        "skipped_count": len(issues),
    }


def files_phrase(count: int, noun: str = "file") -> str:
    return f"1 {noun}" if count == 1 else f"{count} {noun}s"


def _verb(count: int, verb: str) -> str:
    return verb + "s" if count == 1 else verb


def skipped_warning(issues: list[FileIssue]) -> list[Issue]:
    if not issues:
        return []
    named = "; ".join(f"'{i.path}': {i.reason}" for i in issues[:MAX_NAMED])
    more = f"; and {len(issues) - MAX_NAMED} more" if len(issues) > MAX_NAMED else ""
    msg = (
        f"{files_phrase(len(issues))} will be skipped ({named}{more}); fix or remove them "
        "to use them"
    )
    return [Issue("skipped_files", msg)]


def content_warnings(images: list[ImageInfo], labels_file: str | None = None) -> list[Issue]:
    """Identical file contents, found by hash: repeated under one label, or under several
    (class folders; or, with `labels_file`, rows of it giving different labels)."""
    by_hash: dict[str, list[ImageInfo]] = defaultdict(list)
    for image in images:  # in manifest order, so the first copy comes first
        by_hash[image.sha256].append(image)
    copies: list[str] = []  # "copy = original", for every copy after the first in its class
    conflicts: list[str] = []  # "a and b", one per content found in several classes
    for group in by_hash.values():
        first_in_class: dict[Any, str] = {}
        for image in group:
            original = first_in_class.setdefault(_label_key(image.label), image.path)
            if original != image.path:
                copies.append(f"'{image.path}' = '{original}'")
        if len(first_in_class) > 1:
            conflicts.append(" and ".join(f"'{p}'" for p in first_in_class.values()))
    warnings_: list[Issue] = []
    if copies:
        copies.sort()
        shown = ", ".join(copies[:MAX_NAMED]) + (", ..." if len(copies) > MAX_NAMED else "")
        same = "of the same class" if labels_file is None else "with the same labels"
        msg = (
            f"{files_phrase(len(copies), 'image')} {_verb(len(copies), 'repeat')} an earlier "
            f"image {same} "
            f"({shown}); duplicates can land in both the training and the test split and make "
            "the scores look better than they are, so remove the copies"
        )
        warnings_.append(Issue("duplicates", msg))
    if conflicts:
        conflicts.sort()
        shown = "; ".join(conflicts[:MAX_NAMED]) + ("; ..." if len(conflicts) > MAX_NAMED else "")
        where, advice = (
            ("in more than one class folder", "keep it only in that folder")
            if labels_file is None
            else (f"under different labels in {labels_file}", "keep one copy")
        )
        msg = (
            f"{files_phrase(len(conflicts), 'image')} {_verb(len(conflicts), 'appear')} "
            f"{where} ({shown}); decide on one {'class' if labels_file is None else 'label'} "
            f"for each and {advice}"
        )
        warnings_.append(Issue("conflicting_labels", msg))
    return warnings_


def _label_key(label: Label) -> Any:
    """A label as a dict key: a list of labels in any order is one label set."""
    return tuple(sorted(label)) if isinstance(label, list) else label


def size_stats(images: list[ImageInfo]) -> dict[str, float]:
    if not images:
        return dict.fromkeys(
            (f"{stat}_{side}" for side in ("width", "height") for stat in ("min", "max", "median")),
            0.0,
        )
    stats: dict[str, float] = {}
    for side in ("width", "height"):
        values = [getattr(image, side) for image in images]
        stats[f"min_{side}"] = float(min(values))
        stats[f"max_{side}"] = float(max(values))
        stats[f"median_{side}"] = float(statistics.median(values))
    return stats
