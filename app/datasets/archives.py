"""Unpacking an uploaded ZIP of class folders without trusting a single byte of it.

Everything the central directory declares is judged before anything is written: names, file
types, encryption, entry count, total size and compression ratio. The declared sizes can lie,
so the members are then copied by streaming with a running count, and the same limits are
enforced on the bytes that actually come out. Whatever goes wrong, the destination folder is
removed, so a failed upload never leaves half an archive on disk.

Only the standard library is used: this runs in the web process, which never imports torch.
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

CHUNK = 64 * 1024
# Below this size a high ratio proves nothing: a 2 KiB text file of spaces compresses 100:1.
RATIO_FLOOR = 1024 * 1024
# Stored and deflated are what every common tool writes. Deflate's ratio tops out near 1032:1
# and zipfile hands it out in bounded pieces; bzip2 and LZMA are decompressed a whole input
# chunk at a time, so one small read could fill memory before our count sees it.
COMPRESSION_NAMES = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "LZMA",
    9: "deflate64",
}
SUPPORTED_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
# Folders and files that operating systems add to archives; they are never training data.
JUNK_FOLDERS = {"__macosx"}
JUNK_FILES = {"thumbs.db", "desktop.ini"}
MAX_NAME_BYTES = 255  # per path component: what Linux file systems accept
MAX_PATH_CHARS = 1024
DRIVE = re.compile(r"^[A-Za-z]:")
REMAKE = "re-create the ZIP from the class folders"
LOCAL_HEADER_SIZE = 30  # fixed part of a local file header, before its name and extra field


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = 50_000
    max_total_bytes: int = 4 * 1024**3  # uncompressed, over all extracted files
    max_ratio: float = 100.0  # uncompressed / compressed, judged above RATIO_FLOOR only


class ArchiveError(ValueError):
    """The archive is unsafe or unreadable; the message says which member and what to do."""

    def __init__(self, message: str, member: str | None = None) -> None:
        super().__init__(message)
        self.member = member


@dataclass(frozen=True)
class _Member:
    info: zipfile.ZipInfo
    path: str  # normalised relative posix path, as it will be written under dest


def extract_zip(archive: Path, dest: Path, limits: ArchiveLimits) -> list[str]:
    """Extract the files of ``archive`` into the new folder ``dest``; return their sorted paths.

    Directory entries and operating-system junk (``__MACOSX/``, dot files, ``Thumbs.db``,
    ``desktop.ini``) are skipped silently. Any problem raises :class:`ArchiveError` and leaves
    no ``dest`` behind.
    """
    if dest.exists() or dest.is_symlink():
        # Not the user's mistake but ours: never extract over (or then delete) existing data.
        raise FileExistsError(f"extraction folder {dest} already exists")
    archive_size = archive.stat().st_size
    with archive.open("rb") as raw:
        try:
            zf = zipfile.ZipFile(raw)
        # NotImplementedError: a "version needed to extract" newer than zipfile knows.
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
            raise ArchiveError(
                f"the upload is not a ZIP archive or its table of contents is damaged ({exc}); "
                f"{REMAKE} and upload it again"
            ) from exc
        with zf:
            members = _plan(zf, limits, archive_size)
            dest.mkdir(parents=True)
            try:
                _extract_all(zf, members, dest, limits, archive_size)
            except BaseException:
                # KeyboardInterrupt and disk-full included: half an archive is worse than none.
                shutil.rmtree(dest, ignore_errors=True)
                raise
    return sorted(m.path for m in members)


# --- checks on what the archive declares --------------------------------------------------------


def _plan(zf: zipfile.ZipFile, limits: ArchiveLimits, archive_size: int) -> list[_Member]:
    """The members to extract, after every check that needs no decompression."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise ArchiveError(
            f"the archive has {len(infos):,} entries, more than the limit of "
            f"{limits.max_entries:,}; split it into smaller archives"
        )
    _check_layout(infos, archive_size)
    members: list[_Member] = []
    for info in infos:
        path = _safe_path(info.orig_filename)
        if _is_directory(info) or _is_junk(path):
            continue
        _check_member(info, limits)
        members.append(_Member(info, path))
    _check_collisions(members)
    total = sum(m.info.file_size for m in members)
    if total > limits.max_total_bytes:
        raise ArchiveError(
            f"the archive unpacks to {_size(total)}, more than the limit of "
            f"{_size(limits.max_total_bytes)}; upload fewer or smaller images"
        )
    if total > RATIO_FLOOR and total > limits.max_ratio * archive_size:
        # Judged against the size on disk, which the archive cannot lie about.
        raise ArchiveError(
            f"the archive would unpack to {_size(total)} from {_size(archive_size)}, "
            f"more than {limits.max_ratio:g} times its size; this looks like a ZIP bomb, "
            f"so {REMAKE}"
        )
    return members


def _safe_path(name: str) -> str:
    """The member's path relative to the destination, or ArchiveError if it could escape."""
    if "\0" in name:
        # zipfile cuts names at a NUL; the original name is checked so the trick is seen.
        shown = name.replace("\0", "\\0")
        raise ArchiveError(f"member '{shown}' has a NUL byte in its name; {REMAKE}", shown)
    # Windows tools write backslashes; treat them as the separators they are meant to be.
    text = name.replace("\\", "/")
    if text.startswith("/") or DRIVE.match(text):
        raise ArchiveError(f"member '{name}' has an absolute path; {REMAKE}", name)
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"member '{name}' points outside the archive's folder; {REMAKE}", name)
    if not parts:
        if text.endswith("/"):
            return ""  # a "./" folder entry: nothing to write, nothing to fear
        raise ArchiveError(f"member '{name}' has an empty name; {REMAKE}", name)
    if len(text) > MAX_PATH_CHARS or any(
        len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in parts
    ):
        raise ArchiveError(f"member '{name}' has a name too long to store; shorten it", name)
    return "/".join(parts)


def _unix_mode(info: zipfile.ZipInfo) -> int:
    return info.external_attr >> 16


def _is_directory(info: zipfile.ZipInfo) -> bool:
    return info.orig_filename.endswith(("/", "\\")) or stat.S_ISDIR(_unix_mode(info))


def _is_junk(path: str) -> bool:
    parts = PurePosixPath(path).parts
    # Hidden folders (.git/, .ipynb_checkpoints/) are junk as much as hidden files are.
    return (
        parts[0].lower() in JUNK_FOLDERS
        or any(part.startswith(".") for part in parts)
        or parts[-1].lower() in JUNK_FILES
    )


def _check_member(info: zipfile.ZipInfo, limits: ArchiveLimits) -> None:
    name = info.orig_filename
    file_type = stat.S_IFMT(_unix_mode(info))
    if stat.S_ISLNK(_unix_mode(info)):
        raise ArchiveError(
            f"member '{name}' is a symbolic link; links are not allowed, so zip the "
            "image files themselves",
            name,
        )
    if file_type not in (0, stat.S_IFREG):
        # Device files, fifos, sockets: nothing an image dataset contains.
        raise ArchiveError(f"member '{name}' is not a regular file; {REMAKE}", name)
    if info.flag_bits & 0x1:
        raise ArchiveError(
            f"member '{name}' is encrypted; upload a ZIP made without a password", name
        )
    if info.compress_type not in SUPPORTED_COMPRESSION:
        method = COMPRESSION_NAMES.get(info.compress_type, f"method {info.compress_type}")
        raise ArchiveError(
            f"member '{name}' uses {method} compression, which is not accepted; re-create "
            "the ZIP with ordinary (deflate) compression",
            name,
        )
    if info.file_size > RATIO_FLOOR and info.file_size > limits.max_ratio * max(
        info.compress_size, 1
    ):
        raise ArchiveError(
            f"member '{name}' would unpack to {_size(info.file_size)} from "
            f"{_size(info.compress_size)}, more than {limits.max_ratio:g} times its size; "
            f"this looks like a ZIP bomb, so {REMAKE}",
            name,
        )


def _check_layout(infos: list[zipfile.ZipInfo], archive_size: int) -> None:
    """Refuse members whose data overlaps or runs past the end of the file.

    Overlapping entries are how the smallest ZIP bombs reuse one compressed stream many times;
    honest archives never have them.
    """
    ordered = sorted(infos, key=lambda i: i.header_offset)
    for info, after in zip(ordered, [*ordered[1:], None], strict=False):
        end = info.header_offset + LOCAL_HEADER_SIZE + info.compress_size
        limit = archive_size if after is None else after.header_offset
        if end > limit:
            name = info.orig_filename
            raise ArchiveError(
                f"member '{name}' claims more data than the archive holds for it; the ZIP is "
                f"damaged or built to deceive, so {REMAKE}",
                name,
            )


def _check_collisions(members: list[_Member]) -> None:
    """Two members with one path, or a file where a folder must go, cannot both be written."""
    seen: set[str] = set()
    folders: set[str] = set()
    for member in members:
        if member.path in seen:
            raise ArchiveError(
                f"member '{member.path}' appears twice in the archive; {REMAKE}", member.path
            )
        seen.add(member.path)
        folders.update(str(parent) for parent in PurePosixPath(member.path).parents)
    if clashes := sorted(seen & folders):
        raise ArchiveError(
            f"member '{clashes[0]}' is both a file and a folder in the archive; {REMAKE}",
            clashes[0],
        )


# --- streaming extraction -----------------------------------------------------------------------


def _extract_all(
    zf: zipfile.ZipFile,
    members: list[_Member],
    dest: Path,
    limits: ArchiveLimits,
    archive_size: int,
) -> None:
    root = dest.resolve()
    total = 0
    for member in members:
        target = dest.joinpath(*member.path.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        # The names were checked already; this catches anything the checks did not foresee.
        if not target.parent.resolve().is_relative_to(root):
            raise ArchiveError(
                f"member '{member.path}' points outside the archive's folder; {REMAKE}",
                member.path,
            )
        total = _copy_member(zf, member, target, total, limits, archive_size)


def _copy_member(
    zf: zipfile.ZipFile,
    member: _Member,
    target: Path,
    total: int,
    limits: ArchiveLimits,
    archive_size: int,
) -> int:
    """Stream one member to ``target``, judging the real bytes; return the new running total."""
    name = member.info.orig_filename
    declared = member.info.file_size
    written = 0
    # "xb": never follow or overwrite something already there.
    with _open_member(zf, member.info) as source, target.open("xb") as out:
        while chunk := _read(source, name):
            written += len(chunk)
            total += len(chunk)
            if written > declared:
                raise ArchiveError(
                    f"member '{name}' holds more data than its header says "
                    f"({_size(declared)}); the ZIP is damaged or built to deceive, so {REMAKE}",
                    name,
                )
            if total > limits.max_total_bytes:
                raise ArchiveError(
                    f"the archive unpacks to more than the limit of "
                    f"{_size(limits.max_total_bytes)} (reached at member '{name}'); upload "
                    "fewer or smaller images",
                    name,
                )
            compressed = max(member.info.compress_size, 1)
            if (written > RATIO_FLOOR and written > limits.max_ratio * compressed) or (
                total > RATIO_FLOOR and total > limits.max_ratio * archive_size
            ):
                raise ArchiveError(
                    f"member '{name}' unpacks to more than {limits.max_ratio:g} times its "
                    f"compressed size; this looks like a ZIP bomb, so {REMAKE}",
                    name,
                )
            out.write(chunk)
    if written != declared:
        raise ArchiveError(
            f"member '{name}' holds {_size(written)} but its header says {_size(declared)}; "
            f"the ZIP is damaged, so {REMAKE}",
            name,
        )
    return total


def _open_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> IO[bytes]:
    try:
        return zf.open(info)
    except Exception as exc:  # any failure to read untrusted bytes means a damaged archive
        raise _damaged(info.orig_filename, exc) from exc


def _read(source: IO[bytes], name: str) -> bytes:
    try:
        return source.read(CHUNK)
    except Exception as exc:  # bad CRC, zlib.error, EOFError, truncated data, ...
        raise _damaged(name, exc) from exc


def _damaged(name: str, exc: Exception) -> ArchiveError:
    return ArchiveError(
        f"member '{name}' cannot be read ({exc}); the ZIP is damaged, so {REMAKE} and upload "
        "it again",
        name,
    )


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
