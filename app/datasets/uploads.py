"""Streaming uploads to disk under a size cap, hashing as they go."""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

CHUNK = 1024 * 1024


class UploadTooLarge(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            f"file is larger than the upload limit of {limit // (1024 * 1024)} MiB; "
            "split it or raise TUNEBOARD_MAX_UPLOAD_BYTES"
        )


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass
class StoredUpload:
    path: Path
    original_filename: str
    size: int
    sha256: str

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def store_upload(source: Readable, *, filename: str, into: Path, max_bytes: int) -> StoredUpload:
    """Copy an upload into ``into`` chunk by chunk; nothing is left behind if it is too big."""
    into.mkdir(parents=True, exist_ok=True)
    # The stored name is ours; the user's file name is kept only as data.
    path = into / f"upload-{uuid.uuid4().hex}.part"
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("wb") as out:
            while chunk := source.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise UploadTooLarge(max_bytes)
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return StoredUpload(path, Path(filename or "upload").name[:300], size, digest.hexdigest())
