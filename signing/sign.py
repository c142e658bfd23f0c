"""Signing: manifest or directory -> in-toto statement -> DSSE envelope -> Sigstore bundle.

The output of :func:`sign_directory` is a bundle that ``model_signing verify
key`` accepts for ECDSA keys (Ed25519 bundles verify with mir only), and
:func:`sign_manifest` gives the bare envelope the registry stores for a version.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from signing.bundle import build_bundle
from signing.dsse import INTOTO_PAYLOAD_TYPE, Envelope, sign_envelope
from signing.hashing import check_algorithm, hash_tree_files
from signing.intoto import statement_from_manifest, statement_from_shards, statement_to_json
from signing.keys import PrivateKey, key_kind
from signing.manifest import Manifest
from signing.sharding import hash_tree_sharded
from signing.tree import DEFAULT_IGNORE_PATHS, list_files, normalize_ignore_paths


def sign_statement(statement: Mapping[str, Any], private_key: PrivateKey) -> Envelope:
    """A DSSE envelope over the statement's canonical JSON."""
    key_kind(private_key)
    return sign_envelope(statement_to_json(statement), private_key, INTOTO_PAYLOAD_TYPE)


def sign_manifest(
    manifest: Manifest,
    private_key: PrivateKey,
    *,
    model_name: str = "model",
    ignore_paths: Iterable[str] = DEFAULT_IGNORE_PATHS,
) -> Envelope:
    """Sign a manifest of whole-file digests: the envelope the registry checks at commit."""
    return sign_statement(
        statement_from_manifest(manifest, model_name=model_name, ignore_paths=ignore_paths), private_key
    )


def default_model_name(root: Path) -> str:
    """The directory's own name, as model-signing uses it (informative only, never verified)."""
    return root.resolve().name or "model"


def sign_directory(
    root: str | os.PathLike[str],
    private_key: PrivateKey,
    *,
    algorithm: str = "sha256",
    shard_size: int | None = None,
    workers: int | None = None,
    ignore_paths: Iterable[str] = DEFAULT_IGNORE_PATHS,
    model_name: str | None = None,
) -> bytes:
    """Hash ``root`` and return the JSON bytes of a Sigstore bundle v0.3 signing it.

    ``shard_size`` switches to model-signing's sharded SHA-256 serialization (one
    large file then uses every core). ``ignore_paths`` are left out and recorded in
    the statement; add the bundle's own path here when writing it inside ``root``.
    """
    check_algorithm(algorithm)
    key_kind(private_key)
    root_path = Path(root)
    ignore = normalize_ignore_paths(ignore_paths)
    files = list_files(root_path, ignore)
    if not files:
        raise ValueError(f"{root_path}: no files to sign")
    allow_symlinks = any(f.via_symlink for f in files)
    name = model_name if model_name is not None else default_model_name(root_path)
    if shard_size is not None:
        if algorithm != "sha256":
            raise ValueError("sharding is only for sha256; blake3 already hashes one file on every core")
        digests = hash_tree_sharded(files, shard_size, workers)
        statement = statement_from_shards(digests, model_name=name, ignore_paths=ignore, allow_symlinks=allow_symlinks)
    else:
        manifest = Manifest.from_entries(hash_tree_files(files, algorithm, workers))
        statement = statement_from_manifest(
            manifest, model_name=name, ignore_paths=ignore, allow_symlinks=allow_symlinks
        )
    envelope = sign_statement(statement, private_key)
    return build_bundle(envelope, private_key.public_key()).to_json()
