"""Fixtures for the signing tests: a small model tree and key pairs on disk."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from signing.keys import (
    PrivateKey,
    PublicKey,
    generate_private_key,
    private_key_to_unencrypted_pem,
    save_private_key,
    save_public_key,
)

PASSPHRASE = "correct horse battery staple"
MODEL_SIGNING_CLI = Path(sys.executable).parent / "model_signing"

# "a.txt" and "a/b" sort differently as strings and as path components: model-signing
# orders by components, and our subject digest must match its.
TREE_FILES: dict[str, bytes] = {
    "config.json": b'{"hidden_size": 64}',
    "a.txt": b"alpha",
    "a/b": b"nested file",
    "a-b": b"dash",
    "tokenizer/vocab.txt": b"hello\nworld\n",
    "empty.txt": b"",
    ".git/HEAD": b"ref: refs/heads/main\n",
    ".gitattributes": b"*.bin filter=lfs\n",
}


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.fixture
def model_tree(tmp_path: Path) -> Path:
    """A model directory with a 300 KB weights file besides TREE_FILES."""
    root = write_tree(tmp_path / "model", TREE_FILES)
    (root / "weights.bin").write_bytes(os.urandom(300_000))
    return root


@dataclass
class KeyFiles:
    private: PrivateKey
    public: PublicKey
    private_path: Path  # encrypted with PASSPHRASE
    plain_path: Path  # unencrypted, only for model-signing's CLI (it cannot decrypt keys)
    public_path: Path


def make_key_files(directory: Path, kind: str, name: str) -> KeyFiles:
    key = generate_private_key(kind)
    directory.mkdir(parents=True, exist_ok=True)
    files = KeyFiles(
        key, key.public_key(), directory / f"{name}.pem", directory / f"{name}-plain.pem", directory / f"{name}.pub"
    )
    save_private_key(key, files.private_path, PASSPHRASE)
    files.plain_path.write_bytes(private_key_to_unencrypted_pem(key))
    save_public_key(key.public_key(), files.public_path)
    return files


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="session")
def p256(key_dir: Path) -> KeyFiles:
    return make_key_files(key_dir, "ecdsa-p256", "p256")


@pytest.fixture(scope="session")
def p384(key_dir: Path) -> KeyFiles:
    return make_key_files(key_dir, "ecdsa-p384", "p384")


@pytest.fixture(scope="session")
def ed25519_key(key_dir: Path) -> KeyFiles:
    return make_key_files(key_dir, "ed25519", "ed25519")


@pytest.fixture(scope="session")
def other_p256(key_dir: Path) -> KeyFiles:
    return make_key_files(key_dir, "ecdsa-p256", "other")
