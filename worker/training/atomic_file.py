"""Write a file so that no reader ever sees half of it: into a temporary file beside it,
then renamed over it. Every file Tuneboard publishes goes through here (exports, metrics,
checkpoints, cached features, batch predictions, CLI credentials)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(path: Path, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path in `path`'s folder (created empty, mode 0600); when the block
    ends without error it is renamed onto `path`, and removed otherwise. `durable`: flush
    the file and the rename to disk (a power cut must not bring back the old file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if durable:
            _sync(tmp, os.O_RDONLY)
        os.replace(tmp, path)
        if durable:
            _sync(path.parent, os.O_RDONLY)
    finally:
        tmp.unlink(missing_ok=True)


def _sync(path: Path, flags: int) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
