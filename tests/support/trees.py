"""Small model-like directories for tests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def sha(data: bytes) -> str:
    """The registry digest of some bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def model_dir(root: Path, seed: int = 0, big: int = 300_000) -> Path:
    rng = os.urandom
    return make_tree(
        root,
        {
            "config.json": b'{"hidden_size": %d, "nonce": "%s"}' % (64 + seed, rng(8).hex().encode()),
            "model.safetensors": rng(big),
            "tokenizer/vocab.txt": b"hello\nworld\n" + rng(8).hex().encode(),
            "empty.txt": b"",
        },
    )
