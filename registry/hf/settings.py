"""Settings of the Hugging Face endpoint, read from ``MIR_HF_*`` environment variables.

Kept apart from :mod:`registry.settings` so the HF layer can be tuned (or its
URL-signing secret shared between replicas) without touching the core settings.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1 << 20
SECRET_FILE = "hf-url-secret"  # noqa: S105 - a file name, not a secret


class HfSettings(BaseSettings):
    """How the HF-compatible endpoint behaves; the defaults suit one `mir serve`."""

    model_config = SettingsConfigDict(env_prefix="MIR_HF_", extra="ignore")

    # Shared secret for the self-authorizing LFS upload URLs. Replicas behind one load balancer must share it;
    # when unset, a random secret is created once in the data directory.
    url_secret: str | None = None
    url_ttl_seconds: int = 3600
    # Files up to this size travel inline (base64) in the commit; larger ones go through LFS upload URLs.
    regular_max_bytes: int = 1 * MiB
    # At most this much inline content per preupload answer, so commit bodies stay under the JSON body cap.
    inline_budget_bytes: int = 8 * MiB
    tree_page_size: int = 1000
    # Entries per page of the commit list and of the repo lists (/api/models, /api/datasets); a request's
    # ``limit=`` may ask for fewer, or up to 1000.
    list_page_size: int = 100


@lru_cache(maxsize=1)
def hf_settings() -> HfSettings:
    return HfSettings()


@lru_cache(maxsize=8)
def url_secret(data_dir: Path) -> bytes:
    """The HMAC key for upload URLs: ``MIR_HF_URL_SECRET``, else a random key kept in ``data_dir`` (mode 0600)."""
    configured = hf_settings().url_secret
    if configured:
        return configured.encode("utf-8")
    path = data_dir / SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # atomic create-if-absent: concurrent workers all end up with the first secret
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    value = path.read_text().strip()
    if len(value) < 32:
        raise RuntimeError(f"{path} holds no usable secret; delete it so a new one is created")
    return value.encode("ascii")
