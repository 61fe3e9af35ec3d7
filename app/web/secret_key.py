"""The key that signs session cookies.

No install runs with a key anyone else can read: unless TUNEBOARD_SECRET_KEY is set (for
deployments where several web servers share one), a random key is made on first start and
kept in the data folder, readable by its owner only. A key in the source code would let
anyone who has read it sign a cookie for any user id.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import time
from pathlib import Path

from app.config import Settings

log = logging.getLogger("tuneboard.web")
MIN_LENGTH = 32
FILE_NAME = "secret_key"


class InsecureSecretKey(RuntimeError):
    """A configured key too short to resist guessing; the message says how to make one."""


def key_file(settings: Settings) -> Path:
    return settings.data_dir / FILE_NAME


def session_secret(settings: Settings) -> str:
    if settings.secret_key:  # unset or empty: the stored key
        if len(settings.secret_key) < MIN_LENGTH:
            raise InsecureSecretKey(
                f"TUNEBOARD_SECRET_KEY has {len(settings.secret_key)} characters; use at least "
                f"{MIN_LENGTH} random ones "
                '(python -c "import secrets; print(secrets.token_urlsafe(48))"), '
                "or unset it to keep a generated key in the data folder"
            )
        return settings.secret_key
    return _stored_key(key_file(settings))


def _stored_key(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: of two processes starting at once, one writes and the other reads its key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    log.info("made a new session key in %s", path)
    return key


def _read_key(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # Copied around with a loose umask: tighten it rather than trust it as it is.
        log.warning("%s was readable by others (mode %o); making it owner-only", path, mode)
        path.chmod(0o600)
    for _ in range(50):  # the other process may not have written it yet
        key = path.read_text().strip()
        if len(key) >= MIN_LENGTH:
            return key
        time.sleep(0.1)
    raise InsecureSecretKey(
        f"{path} holds no usable key; delete it and restart to make a new one "
        "(everyone will have to sign in again)"
    )
