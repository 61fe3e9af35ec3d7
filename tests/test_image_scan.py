"""Judging image files and class folders: formats, corrupt and oversized files, the report."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from PIL import Image

from app.datasets.archives import ArchiveLimits, extract_zip
from app.datasets.images import (
    DEFAULT_MAX_PIXELS,
    FileIssue,
    ImageInfo,
    ImageRejected,
    image_report,
    inspect_image,
    scan_class_folders,
)
from app.datasets.validation import Report
from tests.image_factories import (
    class_folder_members,
    class_folder_zip,
    distinct_png,
    image_bytes,
    png_bytes,
)


def write_files(root: Path, files: dict[str, bytes]) -> list[str]:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return sorted(files)


def noisy_png(size: tuple[int, int] = (64, 64), seed: int = 0) -> bytes:
    """Random pixels, so the compressed data is long and cutting it really truncates it."""
    pixels = random.Random(seed).randbytes(size[0] * size[1] * 3)
    return png_bytes_from(Image.frombytes("RGB", size, pixels))


def png_bytes_from(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def rejected(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    with pytest.raises(ImageRejected) as info:
        inspect_image(path, max_pixels)
    return str(info.value)


def codes(issues: list[dict[str, object]]) -> list[object]:
    return [issue["code"] for issue in issues]


# --- single files -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF"])
def test_allowed_formats_are_accepted(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "image"
    path.write_bytes(image_bytes(fmt, size=(20, 10)))
    assert inspect_image(path, DEFAULT_MAX_PIXELS) == (20, 10, fmt)


def test_tiff_is_rejected_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "scan.tif"
    path.write_bytes(image_bytes("TIFF"))
    assert rejected(path) == "format TIFF is not supported; convert it to JPEG or PNG"


def test_text_named_jpg_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("definitely a photo of a cat", encoding="utf-8")
    reason = rejected(path)
    assert reason.startswith("not a readable image: ")
    assert str(tmp_path) not in reason  # server paths stay on the server


@pytest.mark.parametrize("data", [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff" + bytes(50)])
def test_fragments_are_rejected_not_raised(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bits.png"
    path.write_bytes(data)
    assert rejected(path).startswith("not a readable image")


def test_truncated_png_is_rejected(tmp_path: Path) -> None:
    data = noisy_png()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    assert rejected(path).startswith("not a readable image: ")


def test_truncated_jpeg_is_rejected_though_decoded_at_reduced_scale(tmp_path: Path) -> None:
    # The check decodes a JPEG at 1/8 scale; the whole compressed stream is still read.
    pixels = random.Random(3).randbytes(1200 * 800 * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (1200, 800), pixels).save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    assert rejected(path).startswith("not a readable image: image file is truncated")
    path.write_bytes(buffer.getvalue())
    assert inspect_image(path, DEFAULT_MAX_PIXELS) == (1200, 800, "JPEG")


def test_png_with_bad_checksum_is_rejected(tmp_path: Path) -> None:
    data = bytearray(noisy_png())
    at = data.index(b"IDAT") + 100
    data[at] ^= 0xFF
    path = tmp_path / "flipped.png"
    path.write_bytes(bytes(data))
    assert rejected(path).startswith("not a readable image: ")


def test_pixel_cap_is_judged_from_the_header(tmp_path: Path) -> None:
    data = noisy_png((100, 100))
    whole, cut = tmp_path / "whole.png", tmp_path / "cut.png"
    whole.write_bytes(data)
    cut.write_bytes(data[:200])  # header intact, pixel data gone: only the header is read
    expected = "100×100 pixels is over the 5,000-pixel limit; scale it down"
    assert rejected(whole, max_pixels=5_000) == expected
    assert rejected(cut, max_pixels=5_000) == expected
    assert inspect_image(whole, 10_000) == (100, 100, "PNG")


@pytest.mark.filterwarnings("error")
def test_pillow_bomb_warning_does_not_leak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that; our limit is what counts.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    path = tmp_path / "a.png"
    path.write_bytes(png_bytes((40, 40)))  # 1,600 pixels: a warning from Pillow, not an error
    assert inspect_image(path, DEFAULT_MAX_PIXELS) == (40, 40, "PNG")
    path.write_bytes(png_bytes((60, 60)))  # 3,600 pixels: Pillow's own error, still a rejection
    assert "pixel" in rejected(path)


# --- class folders ---------------------------------------------------------------------------


def test_scan_labels_sorts_and_hashes(tmp_path: Path) -> None:
    files = write_files(
        tmp_path,
        {
            "dogs/b.png": distinct_png(1, 0),
            "cats/z.png": distinct_png(0, 0),
            "cats/indoor/a.png": distinct_png(0, 1),
        },
    )
    images, issues = scan_class_folders(tmp_path, files, DEFAULT_MAX_PIXELS)
    assert issues == []
    assert [(i.label, i.path) for i in images] == [
        ("cats", "cats/indoor/a.png"),
        ("cats", "cats/z.png"),
        ("dogs", "dogs/b.png"),
    ]
    assert len({i.sha256 for i in images}) == 3
    assert images[0].format == "PNG"
    assert (images[0].width, images[0].height) == (16, 16)


def test_files_at_root_are_issues(tmp_path: Path) -> None:
    files = write_files(tmp_path, {"stray.png": png_bytes(), **class_folder_members({"cats": 1})})
    images, issues = scan_class_folders(tmp_path, files, DEFAULT_MAX_PIXELS)
    assert [i.path for i in images] == ["cats/000.png"]
    assert [i.path for i in issues] == ["stray.png"]
    assert issues[0].reason.startswith("not inside a class folder")


def test_wrapper_folder_is_stripped(tmp_path: Path) -> None:
    members = class_folder_members({"cats": 2, "dogs": 1}, prefix="pets/")
    files = write_files(tmp_path, {**members, "pets/readme.png": png_bytes()})
    images, issues = scan_class_folders(tmp_path, files, DEFAULT_MAX_PIXELS)
    assert sorted({i.label for i in images}) == ["cats", "dogs"]
    assert images[0].path == "pets/cats/000.png"  # paths stay as extracted
    assert [(i.path, i.reason.split(";")[0]) for i in issues] == [
        ("pets/readme.png", "not inside a class folder")
    ]


def test_single_class_folder_is_not_mistaken_for_a_wrapper(tmp_path: Path) -> None:
    files = write_files(tmp_path, class_folder_members({"cats": 2}))
    images, _ = scan_class_folders(tmp_path, files, DEFAULT_MAX_PIXELS)
    assert {i.label for i in images} == {"cats"}


def test_bad_files_are_issues_not_failures(tmp_path: Path) -> None:
    data = noisy_png()
    files = write_files(
        tmp_path,
        {
            **class_folder_members({"cats": 2, "dogs": 2}),
            "cats/cut.png": data[: len(data) // 2],
            "dogs/notes.jpg": b"not an image",
            "dogs/scan.tif": image_bytes("TIFF"),
        },
    )
    images, issues = scan_class_folders(tmp_path, files, DEFAULT_MAX_PIXELS)
    assert len(images) == 4
    assert [i.path for i in issues] == ["cats/cut.png", "dogs/notes.jpg", "dogs/scan.tif"]
    assert issues[2].reason.startswith("format TIFF")


def test_zip_to_report(tmp_path: Path) -> None:
    archive = class_folder_zip(tmp_path / "upload.zip", {"cats": 10, "dogs": 10}, prefix="pets/")
    root = tmp_path / "out"
    files = extract_zip(archive, root, ArchiveLimits())
    report = image_report(*scan_class_folders(root, files, DEFAULT_MAX_PIXELS))
    assert report["errors"] == [] and report["warnings"] == []
    assert report["class_counts"] == {"cats": 10, "dogs": 10}
    assert Report.from_dict(report).ok  # the shape the dataset pages already read


# --- the report ----------------------------------------------------------------------------


def info(path: str, sha: str = "", size: tuple[int, int] = (16, 16)) -> ImageInfo:
    label = path.split("/")[0]
    return ImageInfo(path, label, sha or f"hash-of-{path}", size[0], size[1], "PNG")


def many(label: str, count: int) -> list[ImageInfo]:
    return [info(f"{label}/{i:03d}.png") for i in range(count)]


def test_report_no_images() -> None:
    report = image_report([], [FileIssue("a.txt", "not inside a class folder")])
    assert codes(report["errors"]) == ["no_usable_rows"]
    assert report["num_rows"] == 0
    assert report["image_size"]["median_width"] == 0


def test_report_one_class() -> None:
    report = image_report(many("cats", 12), [])
    assert codes(report["errors"]) == ["one_class"]
    assert "'cats'" in report["errors"][0]["message"]
    assert report["errors"][0]["lines"] == []


def test_report_few_and_imbalanced() -> None:
    report = image_report(many("cats", 30) + many("dogs", 2), [])
    assert report["errors"] == []
    assert codes(report["warnings"]) == ["few_examples", "imbalance"]
    assert "'dogs' (2)" in report["warnings"][0]["message"]
    assert "macro F1" in report["warnings"][1]["message"]


def test_report_duplicates_and_conflicts() -> None:
    images = [
        *many("cats", 10),
        *many("dogs", 10),
        info("cats/copy.png", sha="hash-of-cats/000.png"),
        info("dogs/cat.png", sha="hash-of-cats/001.png"),
    ]
    report = image_report(images, [])
    assert codes(report["warnings"]) == ["duplicates", "conflicting_labels"]
    duplicates, conflicts = (w["message"] for w in report["warnings"])
    assert duplicates.startswith("1 image repeats an earlier image of the same class")
    assert "'cats/copy.png' = 'cats/000.png'" in duplicates
    assert "'cats/001.png' and 'dogs/cat.png'" in conflicts


def test_report_skipped_files_and_sizes() -> None:
    images = [
        info("cats/a.png", size=(10, 40)),
        info("cats/b.png", size=(30, 20)),
        info("dogs/c.png", size=(20, 10)),
        info("dogs/d.png", size=(40, 30)),
    ]
    issues = [FileIssue(f"cats/bad{i:03d}.tif", "format TIFF is not supported") for i in range(250)]
    report = image_report(images, issues)
    assert report["image_size"] == {
        "min_width": 10,
        "max_width": 40,
        "median_width": 25,
        "min_height": 10,
        "max_height": 40,
        "median_height": 25,
    }
    assert report["skipped_count"] == 250
    assert len(report["skipped_files"]) == 200
    assert report["skipped_files"][0] == {
        "path": "cats/bad000.tif",
        "reason": "format TIFF is not supported",
    }
    skipped = next(w for w in report["warnings"] if w["code"] == "skipped_files")
    assert skipped["message"].startswith("250 files will be skipped ('cats/bad000.tif': format")
    assert "and 247 more" in skipped["message"]
