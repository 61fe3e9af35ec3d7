"""Plain functions that build image test inputs: encoded images and ZIP archives.

The archive helpers write member names exactly as given, so tests can craft hostile ones.
"""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

from PIL import Image

Color = int | tuple[int, ...]


def image_bytes(
    fmt: str = "PNG",
    size: tuple[int, int] = (16, 16),
    color: Color = (200, 30, 30),
    mode: str = "RGB",
) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def png_bytes(
    size: tuple[int, int] = (16, 16), color: Color = (200, 30, 30), mode: str = "RGB"
) -> bytes:
    return image_bytes("PNG", size, color, mode)


def make_image_zip(
    path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED
) -> Path:
    """A ZIP holding ``members`` under exactly the given names (``../x``, ``C:\\x``, ...)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo("placeholder")
            # Set after construction: ZipInfo() would cut a name at a NUL byte.
            info.filename = name
            info.compress_type = compression
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, data)
    return path


def distinct_png(label_index: int, index: int, size: tuple[int, int] = (16, 16)) -> bytes:
    """A PNG whose pixels, and so whose hash, differ for every (label_index, index)."""
    color = (index % 256, (index // 256) % 256, label_index % 256)
    return png_bytes(size, color)


def class_folder_members(
    counts: dict[str, int], size: tuple[int, int] = (16, 16), prefix: str = ""
) -> dict[str, bytes]:
    return {
        f"{prefix}{label}/{i:03d}.png": distinct_png(label_index, i, size)
        for label_index, (label, count) in enumerate(counts.items())
        for i in range(count)
    }


def class_folder_zip(
    path: Path, counts: dict[str, int], size: tuple[int, int] = (16, 16), prefix: str = ""
) -> Path:
    """A ZIP of class folders, ``{label}/{i:03d}.png``, every image different."""
    return make_image_zip(path, class_folder_members(counts, size, prefix))


def add_symlink_member(path: Path, name: str, target: str = "/etc/passwd") -> Path:
    """Append a member that unzip tools would recreate as a symbolic link to ``target``."""
    with zipfile.ZipFile(path, "a") as zf:
        info = zipfile.ZipInfo(name)
        info.create_system = 3  # Unix, so the mode bits in external_attr are meaningful
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)
    return path
