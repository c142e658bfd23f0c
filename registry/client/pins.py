"""What this client trusts, kept locally: the registry's pinned key and the user's trusted signer keys.

The point of verifying is not to take the server's word, so neither comes
from the server on every call: the registry key is pinned on first use (or
given explicitly), and signer keys come from ``--key`` files or the local
trust store ``$MIR_CONFIG_DIR/trusted-keys/*.pem``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from registry.client.config import config_dir, per_registry_path
from registry.client.http import MirClient
from signing.keys import PublicKey, key_id, load_public_key, load_public_key_pem


class TrustError(Exception):
    """The registry presents a key other than the one pinned here."""


@dataclass(frozen=True)
class PinnedKey:
    public_key: PublicKey
    key_id: str
    pem: str
    newly_pinned: bool


def _pin_path(url: str) -> Path:
    return per_registry_path("registry-keys", url, ".pem")


def pinned_key_for(url: str) -> PublicKey | None:
    """The registry key pinned earlier for ``url`` (by an online verify or audit), without asking the server."""
    path = _pin_path(url.rstrip("/"))
    return load_public_key(path) if path.exists() else None


def pinned_registry_key(client: MirClient, explicit_pem: str | None = None) -> PinnedKey:
    """The registry key to trust: explicit, else pinned earlier, else pinned now (trust on first use)."""
    served = client.json("GET", "/v1/registry/key")
    path = _pin_path(client.url)
    newly = False
    if explicit_pem is not None:
        pem = explicit_pem
    elif path.exists():
        pem = path.read_text()
    else:
        pem = served["public_key"]
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(pem)
        os.replace(tmp, path)
        newly = True
    public = load_public_key_pem(pem.encode(), source="registry key")
    kid = key_id(public)
    if kid != served["key_id"]:
        raise TrustError(
            f"the registry at {client.url} now presents key {served['key_id']}, not the pinned key {kid}; "
            f"if the registry key was rotated on purpose, remove {path} to pin the new one"
        )
    return PinnedKey(public, kid, pem, newly)


def trust_store_dir() -> Path:
    return config_dir() / "trusted-keys"


def trusted_signer_keys(extra: list[Path]) -> list[PublicKey]:
    """Keys given on the command line plus every PEM in the local trust store."""
    paths = list(extra)
    store = trust_store_dir()
    if store.is_dir():
        paths.extend(sorted(store.glob("*.pem")) + sorted(store.glob("*.pub")))
    return [load_public_key(p) for p in paths]
