"""Unpacking uploaded ZIPs: hostile names, links, bombs, lying headers and damaged files.

Every archive here is real and crafted byte by byte where zipfile will not write it. After
each refusal nothing may exist next to the archive: no extraction folder, no escaped file.
"""

from __future__ import annotations

import struct
import uuid
import warnings
import zipfile
from pathlib import Path

import pytest

from app.datasets.archives import ArchiveError, ArchiveLimits, extract_zip
from tests.image_factories import (
    add_symlink_member,
    class_folder_members,
    class_folder_zip,
    make_image_zip,
    png_bytes,
)

LIMITS = ArchiveLimits()
GOOD = {"cats/001.png": png_bytes()}  # written first, so a late refusal must clean it up


def refused(
    tmp_path: Path, archive: Path, limits: ArchiveLimits = LIMITS
) -> pytest.ExceptionInfo[ArchiveError]:
    """Extraction fails with ArchiveError and leaves nothing but the archive behind."""
    with pytest.raises(ArchiveError) as info:
        extract_zip(archive, tmp_path / "out", limits)
    assert sorted(tmp_path.iterdir()) == [archive]
    return info


def names_member(info: pytest.ExceptionInfo[ArchiveError], member: str) -> None:
    assert info.value.member == member
    assert f"'{member}'" in str(info.value)


def patch_sizes(
    archive: Path,
    *,
    file_size: int | None = None,
    compress_size: int | None = None,
    flags: int | None = None,
) -> None:
    """Rewrite the header fields of a one-member archive, in the local and central headers."""
    data = bytearray(archive.read_bytes())
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    for base, flag_at, sizes_at in ((local, 6, 18), (central, 8, 20)):
        if flags is not None:
            struct.pack_into("<H", data, base + flag_at, flags)
        if compress_size is not None:
            struct.pack_into("<I", data, base + sizes_at, compress_size)
        if file_size is not None:
            struct.pack_into("<I", data, base + sizes_at + 4, file_size)
    archive.write_bytes(bytes(data))


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../evil.png",
        "cats/../../evil.png",
        "a/../../x",
        "..",
        "C:/evil.png",
        "C:\\evil.png",
        "c:evil.png",
        "\\evil.png",
        "\\\\server\\share\\evil.png",
        "cats\\..\\..\\evil.png",
    ],
)
def test_escaping_names_are_refused(tmp_path: Path, name: str) -> None:
    archive = make_image_zip(tmp_path / "upload.zip", {**GOOD, name: png_bytes()})
    names_member(refused(tmp_path, archive), name)
    assert not (tmp_path.parent / "evil.png").exists()


def test_absolute_path_is_refused(tmp_path: Path) -> None:
    target = Path(f"/tmp/tuneboard-evil-{uuid.uuid4().hex}.png")
    archive = make_image_zip(tmp_path / "upload.zip", {**GOOD, str(target): png_bytes()})
    info = refused(tmp_path, archive)
    names_member(info, str(target))
    assert "absolute path" in str(info.value)
    assert not target.exists()


def test_nul_byte_in_name_is_refused(tmp_path: Path) -> None:
    archive = make_image_zip(tmp_path / "upload.zip", {**GOOD, "cats/a\0.png": png_bytes()})
    info = refused(tmp_path, archive)
    names_member(info, "cats/a\\0.png")
    assert "NUL" in str(info.value)


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    archive = add_symlink_member(class_folder_zip(tmp_path / "upload.zip", {"cats": 2}), "cats/x")
    info = refused(tmp_path, archive)
    names_member(info, "cats/x")
    assert "symbolic link" in str(info.value)


def test_file_and_folder_with_one_name_are_refused(tmp_path: Path) -> None:
    archive = make_image_zip(tmp_path / "upload.zip", {"cats": b"x", **GOOD})
    names_member(refused(tmp_path, archive), "cats")


def test_duplicate_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is told to write
        zf.writestr("cats/001.png", png_bytes())
        zf.writestr("cats/001.png", png_bytes(color=(0, 0, 0)))
    names_member(refused(tmp_path, archive), "cats/001.png")


# --- what the headers declare ---------------------------------------------------------------


def test_entry_count_bomb(tmp_path: Path) -> None:
    members = {f"cats/{i}.png": b"" for i in range(11)}
    archive = make_image_zip(tmp_path / "upload.zip", members)
    info = refused(tmp_path, archive, ArchiveLimits(max_entries=10))
    assert info.value.member is None
    assert "11 entries" in str(info.value)


def test_declared_total_over_cap(tmp_path: Path) -> None:
    archive = class_folder_zip(tmp_path / "upload.zip", {"cats": 3, "dogs": 3})
    info = refused(tmp_path, archive, ArchiveLimits(max_total_bytes=200))
    assert "limit of 200 bytes" in str(info.value)


def test_ratio_bomb_member(tmp_path: Path) -> None:
    archive = make_image_zip(tmp_path / "upload.zip", {**GOOD, "cats/bomb.png": bytes(20 << 20)})
    assert archive.stat().st_size < 100_000
    info = refused(tmp_path, archive)
    names_member(info, "cats/bomb.png")
    assert "ZIP bomb" in str(info.value)


def test_ratio_bomb_whole_archive(tmp_path: Path) -> None:
    # Each member stays under the 1 MiB per-member floor; together they do not.
    members = {f"cats/{i}.png": bytes(1 << 20) for i in range(4)}
    archive = make_image_zip(tmp_path / "upload.zip", members)
    info = refused(tmp_path, archive)
    assert info.value.member is None
    assert "ZIP bomb" in str(info.value)


def test_high_ratio_of_small_files_is_fine(tmp_path: Path) -> None:
    archive = make_image_zip(tmp_path / "upload.zip", {"cats/a.png": bytes(500_000), **GOOD})
    assert extract_zip(archive, tmp_path / "out", LIMITS) == ["cats/001.png", "cats/a.png"]


def test_encrypted_member_is_refused(tmp_path: Path) -> None:
    archive = make_image_zip(tmp_path / "upload.zip", {"cats/001.png": png_bytes()})
    patch_sizes(archive, flags=0x1)
    info = refused(tmp_path, archive)
    names_member(info, "cats/001.png")
    assert "encrypted" in str(info.value)


def test_unsupported_compression_is_refused(tmp_path: Path) -> None:
    archive = make_image_zip(tmp_path / "upload.zip", GOOD, compression=zipfile.ZIP_BZIP2)
    info = refused(tmp_path, archive)
    names_member(info, "cats/001.png")
    assert "bzip2" in str(info.value)


def test_compressed_size_past_the_end_is_refused(tmp_path: Path) -> None:
    archive = make_image_zip(tmp_path / "upload.zip", {"cats/001.png": png_bytes()})
    patch_sizes(archive, compress_size=10_000_000)
    names_member(refused(tmp_path, archive), "cats/001.png")


# --- headers that lie, caught while streaming -----------------------------------------------------


def test_header_understating_size_is_caught(tmp_path: Path) -> None:
    # 10 MiB of zeros that claims to be 1,000 bytes: small enough to dodge every declared check.
    archive = make_image_zip(tmp_path / "upload.zip", {"cats/zeros.png": bytes(10 << 20)})
    patch_sizes(archive, file_size=1000)
    info = refused(tmp_path, archive)
    names_member(info, "cats/zeros.png")
    assert "damaged" in str(info.value)


def test_header_overstating_size_is_caught(tmp_path: Path) -> None:
    archive = make_image_zip(
        tmp_path / "upload.zip", {"cats/001.png": png_bytes()}, compression=zipfile.ZIP_STORED
    )
    patch_sizes(archive, file_size=len(png_bytes()) + 100)
    info = refused(tmp_path, archive)
    names_member(info, "cats/001.png")
    assert "header says" in str(info.value)


def test_bad_crc_removes_what_was_already_written(tmp_path: Path) -> None:
    payload = b"A" * 100 + b"UNIQUEMARK"
    archive = make_image_zip(
        tmp_path / "upload.zip", {**GOOD, "dogs/002.png": payload}, compression=zipfile.ZIP_STORED
    )
    archive.write_bytes(archive.read_bytes().replace(b"UNIQUEMARK", b"UNIQUEMARX"))
    info = refused(tmp_path, archive)
    names_member(info, "dogs/002.png")
    assert "CRC" in str(info.value)


# --- not a ZIP at all -------------------------------------------------------------------------


def test_not_a_zip(tmp_path: Path) -> None:
    archive = tmp_path / "upload.zip"
    archive.write_text("label,text\ncat,meow\n", encoding="utf-8")
    info = refused(tmp_path, archive)
    assert info.value.member is None
    assert "not a ZIP archive" in str(info.value)


def test_truncated_zip(tmp_path: Path) -> None:
    archive = class_folder_zip(tmp_path / "upload.zip", {"cats": 3, "dogs": 3})
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    assert "not a ZIP archive" in str(refused(tmp_path, archive).value)


def test_existing_destination_is_left_alone(tmp_path: Path) -> None:
    archive = class_folder_zip(tmp_path / "upload.zip", {"cats": 1})
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(FileExistsError):
        extract_zip(archive, dest, LIMITS)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]


# --- what is extracted ----------------------------------------------------------------------


def test_class_folders_are_extracted(tmp_path: Path) -> None:
    members = class_folder_members({"cats": 2, "dogs": 1})
    archive = make_image_zip(tmp_path / "upload.zip", members)
    dest = tmp_path / "out"
    assert extract_zip(archive, dest, LIMITS) == sorted(members)
    for name, data in members.items():
        assert (dest / name).read_bytes() == data


def test_junk_and_directory_entries_are_skipped(tmp_path: Path) -> None:
    archive = make_image_zip(
        tmp_path / "upload.zip",
        {
            "./": b"",
            "cats/": b"",
            "__MACOSX/cats/._001.png": b"resource fork",
            "cats/.DS_Store": b"finder",
            ".hidden/x.png": png_bytes(),
            "cats/Thumbs.db": b"thumbs",
            "desktop.ini": b"[.ShellClassInfo]",
            **GOOD,
        },
    )
    dest = tmp_path / "out"
    assert extract_zip(archive, dest, LIMITS) == ["cats/001.png"]
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["cats", "cats/001.png"]


def test_backslash_separators_become_folders(tmp_path: Path) -> None:
    archive = make_image_zip(tmp_path / "upload.zip", {"cats\\001.png": png_bytes()})
    dest = tmp_path / "out"
    assert extract_zip(archive, dest, LIMITS) == ["cats/001.png"]
    assert (dest / "cats" / "001.png").read_bytes() == png_bytes()


def test_wrapper_folder_is_kept_as_is(tmp_path: Path) -> None:
    # Extraction is faithful; taking off the wrapper is the scan's decision.
    archive = class_folder_zip(tmp_path / "upload.zip", {"cats": 1, "dogs": 1}, prefix="pets/")
    assert extract_zip(archive, tmp_path / "out", LIMITS) == [
        "pets/cats/000.png",
        "pets/dogs/000.png",
    ]
