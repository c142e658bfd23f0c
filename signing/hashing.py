"""Whole-file digests of files and directories, in parallel, in bounded memory.

The registry identifies every blob by its plain whole-file digest
(``sha256:<hex>``, what Hugging Face ETags and pulls use), so this module never
changes what is hashed, only how fast: files are read in fixed-size chunks into
one reusable buffer per worker (memory is ``workers x chunk_size`` whatever the
model size), and a thread pool hashes different files at once (``hashlib`` and
``blake3`` release the GIL while hashing). SHA-256 is inherently sequential, so
one large file still runs on one core; BLAKE3 is a tree hash, so large files are
hashed with ``blake3``'s own threads and do use every core. For SHA-256 over one
large file on all cores, see :mod:`signing.sharding`.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Protocol, TypeVar

import blake3

from signing.manifest import FileEntry, Manifest
from signing.tree import DEFAULT_IGNORE_PATHS, TreeFile, list_files

ALGORITHMS: tuple[str, ...] = ("sha256", "blake3")
DEFAULT_CHUNK_SIZE = 4 << 20
# Below this size a file is not worth splitting over BLAKE3 threads: the pool of
# per-file workers keeps the cores busy instead.
BLAKE3_THREADED_MIN_SIZE = 16 << 20

T = TypeVar("T")
R = TypeVar("R")

HashProgress = Callable[[int, int], Callable[[int], None]]
"""Given (file count, total bytes) once a tree is listed, returns what is called with each hashed chunk's size."""


class UnsupportedAlgorithmError(ValueError):
    """A hash algorithm we do not implement (only sha256 and blake3 are)."""


class HashingError(OSError):
    """A file that could not be read completely while hashing; the message names it."""


class _Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...

    def hexdigest(self) -> str: ...


def check_algorithm(algorithm: str) -> str:
    """Return ``algorithm`` if supported, else raise UnsupportedAlgorithmError."""
    if algorithm not in ALGORITHMS:
        raise UnsupportedAlgorithmError(
            f"unsupported hash algorithm {algorithm!r}: expected one of {', '.join(ALGORITHMS)}"
        )
    return algorithm


def new_hasher(algorithm: str, threads: int = 1) -> _Hasher:
    """A fresh streaming hasher; ``threads`` > 1 only matters for BLAKE3."""
    check_algorithm(algorithm)
    if algorithm == "blake3":
        return blake3.blake3(max_threads=max(1, threads))
    return hashlib.sha256()


def default_workers() -> int:
    """The number of cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def hash_range(
    source: str | os.PathLike[str],
    start: int,
    end: int | None,
    algorithm: str = "sha256",
    *,
    threads: int = 1,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    buffer: bytearray | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> tuple[int, str]:
    """Hash bytes ``[start, end)`` of a file (to EOF if ``end`` is None): (bytes read, hex digest).

    Raises HashingError if the file cannot be opened or is shorter than ``end``
    (it changed under us); the digest of a partial read is never returned.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    hasher = new_hasher(algorithm, threads)
    buf = buffer if buffer is not None and len(buffer) >= chunk_size else bytearray(chunk_size)
    view = memoryview(buf)
    total = 0
    remaining = None if end is None else end - start
    try:
        with open(source, "rb", buffering=0) as handle:
            if start:
                handle.seek(start)
            while remaining is None or remaining > 0:
                want = chunk_size if remaining is None else min(chunk_size, remaining)
                n = handle.readinto(view[:want])
                if not n:
                    break
                hasher.update(view[:n])
                total += n
                if on_bytes is not None:
                    on_bytes(n)
                if remaining is not None:
                    remaining -= n
    except OSError as exc:
        raise HashingError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    if remaining:
        raise HashingError(f"{source}: file ended {remaining} bytes early (changed while hashing?)")
    return total, hasher.hexdigest()


def hash_file(
    path: str | os.PathLike[str],
    algorithm: str = "sha256",
    *,
    threads: int = 1,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> str:
    """The whole-file digest ``<algorithm>:<hex>`` of one file, read in chunks."""
    _, hexdigest = hash_range(path, 0, None, algorithm, threads=threads, chunk_size=chunk_size)
    return f"{algorithm}:{hexdigest}"


def run_parallel(func: Callable[[T], R], items: Sequence[T], workers: int) -> list[R]:
    """Apply ``func`` to every item on ``workers`` threads, keeping order; the first error wins.

    On an error the pending items are cancelled rather than hashed for nothing.
    """
    if workers <= 1 or len(items) <= 1:
        return [func(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="mir-hash") as pool:
        futures: list[Future[R]] = [pool.submit(func, item) for item in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            exc = future.exception()
            if exc is not None:
                for pending in futures:
                    pending.cancel()
                raise exc
        return [future.result() for future in futures]


def hash_tree_files(
    files: Sequence[TreeFile],
    algorithm: str = "sha256",
    workers: int | None = None,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_bytes: Callable[[int], None] | None = None,
) -> list[FileEntry]:
    """Hash already-listed files in parallel; the sizes recorded are the bytes actually hashed.

    ``on_bytes`` is called (from the hashing threads) with each chunk's size, for a progress display.
    """
    check_algorithm(algorithm)
    n_workers = workers if workers is not None else default_workers()
    if n_workers < 1:
        raise ValueError("workers must be at least 1")
    # Largest first, so the one big file starts at once while the others share the small ones.
    order = sorted(range(len(files)), key=lambda i: files[i].size, reverse=True)

    buffers = threading.local()  # one chunk buffer per thread, not one per file

    def work(index: int) -> FileEntry:
        tree_file = files[index]
        threads = n_workers if algorithm == "blake3" and tree_file.size >= BLAKE3_THREADED_MIN_SIZE else 1
        buf = getattr(buffers, "buf", None)
        if buf is None:
            buf = buffers.buf = bytearray(chunk_size)
        size, hexdigest = hash_range(
            tree_file.source, 0, None, algorithm, threads=threads, chunk_size=chunk_size, buffer=buf,
            on_bytes=on_bytes,
        )
        return FileEntry(path=tree_file.path, size=size, digest=f"{algorithm}:{hexdigest}")

    entries = run_parallel(work, order, n_workers)
    return sorted(entries, key=lambda e: e.path)


def hash_directory(
    root: str | os.PathLike[str],
    algorithm: str = "sha256",
    workers: int | None = None,
    *,
    ignore_paths: Iterable[str] = DEFAULT_IGNORE_PATHS,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: HashProgress | None = None,
    check_paths: Callable[[list[str]], None] | None = None,
    on_listed: Callable[[list[TreeFile]], None] | None = None,
) -> Manifest:
    """The manifest (path, size, whole-file digest) of every regular file under ``root``.

    ``workers`` defaults to the number of usable cores. ``progress``, once the files are listed, is told how
    many there are and their total size, and returns what counts the bytes hashed. ``check_paths`` may refuse
    the listed paths (by raising) before a byte is hashed. Raises TreeError for an unsafe tree, HashingError for
    an unreadable file, UnsupportedAlgorithmError. ``on_listed`` sees the checked listing before hashing starts
    (``mir push`` starts sending large files then).
    """
    check_algorithm(algorithm)
    files = list_files(Path(root), ignore_paths)
    if check_paths is not None:
        check_paths([f.path for f in files])
    if on_listed is not None:
        on_listed(files)
    on_bytes = progress(len(files), sum(f.size for f in files)) if progress is not None else None
    entries = hash_tree_files(files, algorithm, workers, chunk_size=chunk_size, on_bytes=on_bytes)
    return Manifest.from_entries(entries)
