"""Sharded SHA-256 digests, the one way to put every core on one large file.

SHA-256 is a sequential hash, so a 20 GB safetensors file takes one core for
as long as it takes. OpenSSF model-signing's "shards" serialization cuts every
file into fixed-size byte ranges and hashes each range separately; the ranges
are independent, so a pool of threads hashes them all at once. The resource
name of a shard is ``"<path>:<start>:<end>"`` and its algorithm
``"sha256-sharded-<shard size>"``; we produce and accept exactly that, so
model-signing verifies our sharded signatures and we verify its.

Sharded digests are only for signatures: the registry's per-file digest stays
the plain whole-file ``sha256:<hex>`` from :mod:`signing.hashing`.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from signing.hashing import DEFAULT_CHUNK_SIZE, default_workers, hash_range, run_parallel
from signing.paths import InvalidPathError, validate_relative_path
from signing.tree import DEFAULT_IGNORE_PATHS, TreeFile, list_files

# model-signing's default shard size; any positive size works (it is recorded in
# the statement) but this one lets model-signing's default configuration verify.
DEFAULT_SHARD_SIZE = 1_000_000_000
SHARDED_HASH_TYPE = "sha256"
_OFFSET_RE = re.compile(r"^(0|[1-9][0-9]{0,18})$")


class ShardFormatError(ValueError):
    """A shard resource name or shard layout that does not follow the model-signing format."""


@dataclass(frozen=True, slots=True)
class Shard:
    """Bytes ``[start, end)`` of the file at ``path`` and their SHA-256 (hex)."""

    path: str
    start: int
    end: int
    digest: str

    @property
    def name(self) -> str:
        return f"{self.path}:{self.start}:{self.end}"


@dataclass(frozen=True, slots=True)
class ShardedDigests:
    """A directory hashed shard by shard: the shards, and every file's size (empty files have no shard)."""

    shard_size: int
    shards: tuple[Shard, ...]
    file_sizes: dict[str, int]


def sharded_algorithm(shard_size: int) -> str:
    """The resource algorithm string model-signing writes for a shard size."""
    return f"{SHARDED_HASH_TYPE}-sharded-{shard_size}"


def shard_ranges(size: int, shard_size: int) -> list[tuple[int, int]]:
    """Split ``[0, size)`` into consecutive ranges of ``shard_size`` (the last one shorter).

    An empty file has no range at all, exactly as in model-signing.
    """
    if shard_size <= 0:
        raise ValueError(f"shard size must be positive, got {shard_size}")
    if size < 0:
        raise ValueError(f"file size must not be negative, got {size}")
    return [(start, min(start + shard_size, size)) for start in range(0, size, shard_size)]


def parse_shard_name(name: str) -> tuple[str, int, int]:
    """Split ``"<path>:<start>:<end>"`` into its parts, refusing non-canonical offsets and paths."""
    parts = name.rsplit(":", 2)
    if len(parts) != 3:
        raise ShardFormatError(f"shard name {name[:200]!r} is not '<path>:<start>:<end>'")
    path, start_s, end_s = parts
    if not _OFFSET_RE.match(start_s) or not _OFFSET_RE.match(end_s):
        raise ShardFormatError(f"shard name {name[:200]!r} has non-canonical offsets")
    start, end = int(start_s), int(end_s)
    if end <= start:
        raise ShardFormatError(f"shard name {name[:200]!r} has end <= start")
    try:
        validate_relative_path(path)
    except InvalidPathError as exc:
        raise ShardFormatError(f"shard name {name[:200]!r}: {exc}") from exc
    if ":" in path:
        raise ShardFormatError(f"shard name {name[:200]!r}: path contains ':'")
    return path, start, end


def sort_key(path: str, start: int = 0, end: int = 0) -> tuple[list[str], int, int]:
    """model-signing's resource order: by path components (as PurePosixPath compares), then offsets."""
    return (path.split("/"), start, end)


def hash_tree_sharded(
    files: Sequence[TreeFile],
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> ShardedDigests:
    """Hash every shard of already-listed files on a pool of threads."""
    for tree_file in files:
        if ":" in tree_file.path:
            raise ShardFormatError(
                f"{tree_file.source}: path {tree_file.path!r} contains ':', which the model-signing "
                "shard format cannot represent; sign this directory without sharding"
            )
    n_workers = workers if workers is not None else default_workers()
    if n_workers < 1:
        raise ValueError("workers must be at least 1")
    jobs = [(f, start, end) for f in files for start, end in shard_ranges(f.size, shard_size)]
    jobs.sort(key=lambda job: job[2] - job[1], reverse=True)
    buffers = threading.local()

    def work(job: tuple[TreeFile, int, int]) -> Shard:
        tree_file, start, end = job
        buf = getattr(buffers, "buf", None)
        if buf is None:
            buf = buffers.buf = bytearray(chunk_size)
        _, hexdigest = hash_range(tree_file.source, start, end, SHARDED_HASH_TYPE, chunk_size=chunk_size, buffer=buf)
        return Shard(tree_file.path, start, end, hexdigest)

    shards = run_parallel(work, jobs, n_workers)
    shards.sort(key=lambda s: sort_key(s.path, s.start, s.end))
    return ShardedDigests(shard_size, tuple(shards), {f.path: f.size for f in files})


def hash_directory_sharded(
    root: str | os.PathLike[str],
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int | None = None,
    *,
    ignore_paths: Iterable[str] = DEFAULT_IGNORE_PATHS,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> ShardedDigests:
    """Shard every regular file under ``root`` and hash all shards in parallel (SHA-256)."""
    if shard_size <= 0:
        raise ValueError(f"shard size must be positive, got {shard_size}")
    return hash_tree_sharded(list_files(Path(root), ignore_paths), shard_size, workers, chunk_size=chunk_size)
