"""The API tokens `tuneboard login` keeps, one per server, in the user's config folder
(`$XDG_CONFIG_HOME/tuneboard/credentials.json`, else `~/.config/…`), as `gh auth login`
does: the folder is its owner's alone (0700), the file too (0600), and it is written under a
temporary name and renamed, so a reader never sees half of it and it is never, even for a
moment, readable by others. The command-line client uses the token kept for its server when
no --token or TUNEBOARD_TOKEN is given.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from worker.training.atomic_file import replacing

FOLDER_MODE = 0o700


def _key(server: str) -> str:
    return server.rstrip("/")


def load(path: Path) -> dict[str, dict[str, str]]:
    """{server: {"token", "username"}}; empty when there is no file (or an unreadable one)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    servers = data.get("servers") if isinstance(data, dict) else None
    return servers if isinstance(servers, dict) else {}


def token_for(path: Path, server: str) -> str | None:
    entry = load(path).get(_key(server))
    token = entry.get("token") if isinstance(entry, dict) else None
    return token if isinstance(token, str) and token else None


def _write(path: Path, servers: dict[str, dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, FOLDER_MODE)
    # The temporary file is 0600 before anything is written into it.
    with replacing(path, durable=True) as tmp:
        tmp.write_text(json.dumps({"servers": servers}, indent=2))


def save(path: Path, server: str, *, token: str, username: str) -> None:
    servers = load(path)
    servers[_key(server)] = {"token": token, "username": username}
    _write(path, servers)


def forget(path: Path, server: str) -> bool:
    """Drop the server's token (the file goes with the last one); whether there was one."""
    servers = load(path)
    if servers.pop(_key(server), None) is None:
        return False
    if servers:
        _write(path, servers)
    else:
        path.unlink(missing_ok=True)
    return True


class LoginRefused(RuntimeError):
    """The server said no; the message is its own explanation."""


def request_token(server: str, *, username: str, password: str, name: str) -> dict[str, Any]:
    """A new token from POST /api/v1/auth/token, which takes the password (never a token)."""
    body = {"username": username, "password": password, "name": name}
    try:
        response = httpx.post(f"{_key(server)}/api/v1/auth/token", json=body, timeout=60)
    except httpx.HTTPError as exc:
        raise LoginRefused(f"cannot reach {server}: {exc}") from exc
    if response.status_code != 201:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise LoginRefused(f"{response.status_code}: {detail}")
    result: dict[str, Any] = response.json()
    return result
