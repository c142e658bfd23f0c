"""The identifiers the Hugging Face protocol expects, computed from what the registry already stores.

The registry keeps one sha256 per file and one manifest digest per version. The
Hub protocol wants 40-hex commit ids, git blob sha1s and ETags; everything here
is derived from those two stored values, so serving the protocol needs no new
column and never reads a file to answer a metadata request.

- Every file is served LFS-style: its ETag is the sha256 hex the registry stores,
  and its git ``oid`` is the sha1 of the Git-LFS pointer text, which depends only
  on (sha256, size).
- A version's commit id is a truncated SHA-256 over (repo, version, manifest
  digest): stable, 40 lowercase hex (what the client's cache keys on), and not a
  SHA-1, so a pusher cannot cheaply craft two versions with one commit id. It lives
  in :mod:`registry.artifacts.commit_ids`, because ``/v1`` references accept it too.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from registry.artifacts.commit_ids import COMMIT_ID, commit_id, empty_commit_id, is_commit_id

__all__ = [
    "COMMIT_ID", "LFS_SPEC", "SHA256_HEX", "SHORT_COMMIT_ID", "commit_id", "directory_oid", "empty_commit_id",
    "etag", "git_blob_sha1", "is_commit_id", "lfs_pointer", "pointer_oid", "pointer_size", "sha256_hex",
]

SHORT_COMMIT_ID = re.compile(r"^[0-9a-f]{7,40}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
LFS_SPEC = "https://git-lfs.github.com/spec/v1"
_TREE_DOMAIN = b"mir-hf-tree-v1\x00"


def sha256_hex(digest: str) -> str:
    """The hex part of a registry digest ``sha256:<hex>`` (what HF calls the LFS oid and uses as ETag)."""
    algorithm, _, hex_ = digest.partition(":")
    if algorithm != "sha256" or not SHA256_HEX.fullmatch(hex_):
        raise ValueError(f"not a sha256 digest: {digest[:80]!r}")
    return hex_


def etag(digest: str) -> str:
    """The quoted ETag header value of a file: its sha256 hex, which the client uses as its cache blob name."""
    return f'"{sha256_hex(digest)}"'


def git_blob_sha1(data: bytes) -> str:
    """Git's object id of a blob: ``sha1(b"blob <len>\\0" + data)`` (what HF uses for regular files)."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data, usedforsecurity=False).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The exact Git-LFS pointer file text for content with this sha256 hex and size."""
    if not SHA256_HEX.fullmatch(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256[:80]!r}")
    if size < 0:
        raise ValueError(f"negative size: {size}")
    return f"version {LFS_SPEC}\noid sha256:{sha256}\nsize {size}\n".encode("ascii")


def pointer_oid(sha256: str, size: int) -> str:
    """The git oid HF reports for an LFS file: the git blob sha1 of its pointer text."""
    return git_blob_sha1(lfs_pointer(sha256, size))


def pointer_size(sha256: str, size: int) -> int:
    return len(lfs_pointer(sha256, size))


def directory_oid(children: Iterable[tuple[str, str]]) -> str:
    """A stable 40-hex id for a directory, from its (path, oid) descendants; clients only display it."""
    hasher = hashlib.sha256(_TREE_DOMAIN)
    for path, oid in sorted(children):
        hasher.update(path.encode("utf-8") + b"\x00" + oid.encode("ascii") + b"\n")
    return hasher.hexdigest()[:40]
