"""The CLI's local credentials: which registry to talk to and with which token.

Stored in ``$MIR_CONFIG_DIR/credentials.json`` (default ``~/.config/mir``),
readable only by the user, like ~/.docker/config.json or the HF token file.
``MIR_URL`` and ``MIR_TOKEN`` override it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8470"


def config_dir() -> Path:
    explicit = os.environ.get("MIR_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mir"


def per_registry_path(folder: str, url: str, suffix: str) -> Path:
    """A file this machine keeps about one registry (its pinned key, the last audit head it saw), named by the URL."""
    return config_dir() / folder / f"{sha256(url.encode()).hexdigest()[:16]}{suffix}"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


@dataclass(frozen=True)
class Credentials:
    url: str
    token: str | None


def load_credentials() -> Credentials:
    stored: dict[str, str] = {}
    path = credentials_path()
    if path.exists():
        try:
            loaded = json.loads(path.read_text())
            if isinstance(loaded, dict):
                stored = {k: v for k, v in loaded.items() if isinstance(v, str)}
        except (OSError, ValueError):
            stored = {}
    url = os.environ.get("MIR_URL") or stored.get("url") or DEFAULT_URL
    token = os.environ.get("MIR_TOKEN") or stored.get("token")
    return Credentials(url=url.rstrip("/"), token=token)


def save_credentials(url: str, token: str) -> Path:
    """Write the credentials file atomically with mode 0600."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url.rstrip("/"), "token": token}, fh)
    os.replace(tmp, path)
    return path
