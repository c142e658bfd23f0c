"""Content-addressed blob storage on a local directory.

Writes are hashed as they stream in, checked against the expected digest and
size, fsynced and renamed into place, so a blob path either holds exactly the
bytes its digest names or does not exist. A crash leaves only temp files,
which are swept on start.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

import blake3

from registry.core.chunks import ChunkHasher, ChunkList
from signing.digests import parse_digest

# Whole-file SHA-256 of large upload blocks, beside the chunk-list pass (see ``BlobWriter.write``).
PARALLEL_HASH_MIN = 1 << 20
_HASH_POOL = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="mir-blob-hash")


class BlobStoreUnavailable(OSError):
    """The blob store could not be reached or refused the request (not a property of the blob)."""


class BlobDigestMismatch(ValueError):
    """The uploaded bytes do not hash to the digest they were sent under."""


class BlobSizeMismatch(ValueError):
    """The uploaded body is longer or shorter than the declared size."""


class BlobTooLarge(BlobSizeMismatch):
    """The body grew past the declared size; the upload was cut off early."""


class BlobWriter:
    """Streams one blob to a temp file while hashing it; ``commit`` makes it visible.

    With ``digest`` None the bytes name themselves: ``commit`` stores them under the SHA-256 they hash to and
    sets ``digest`` (an upload that starts before its sender has finished hashing).
    """

    def __init__(self, store: LocalBlobStore, digest: str | None, expected_size: int) -> None:
        self._expected = sha256_of(digest) if digest is not None else None
        self._store = store
        self.digest = digest
        self.expected_size = expected_size
        self.written = 0
        self._hashes = BlobHashes()
        self.blake3_digest: str | None = None
        self.chunks: ChunkList | None = None
        store.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_path = store.tmp_dir / temp_name(self._expected.removeprefix("sha256:") if self._expected
                                                  else UNNAMED)
        self._fd: int | None = os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append a chunk; refuses to grow past the declared size (so an oversize body stops early)."""
        self.write_pieces([chunk])

    def write_pieces(self, pieces: list[bytes | bytearray | memoryview]) -> None:
        """Append several pieces; the whole-file SHA-256 of a large batch runs on a helper thread meanwhile.

        The two SHA-256 passes (whole file, chunk list) are the per-byte cost of an upload; side by side they
        take the time of one. Each piece is hashed and written while it is still in the CPU cache, which is
        why pieces are not joined into one big buffer first.
        """
        self.written = check_growth(self.written, pieces, self.expected_size)
        fd = self._fd
        assert fd is not None

        def write_piece(view: memoryview) -> None:
            while view:
                n = os.write(fd, view)
                view = view[n:]

        self._hashes.update(pieces, write_piece)

    def commit(self) -> None:
        """Check size and digest, fsync, and atomically rename into place."""
        digest = self._hashes.check(self._expected, self.written, self.expected_size)
        assert self._fd is not None
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        final = self._store.path_for(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp_path, final)
        _fsync_dir(final.parent)
        self.digest = digest
        self.blake3_digest, self.chunks = self._hashes.finish()

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.tmp_path.unlink(missing_ok=True)


def sha256_of(digest: str) -> str:
    """``digest`` spelled ``sha256:<hex>``; ValueError for other algorithms (blobs are addressed by SHA-256 only)."""
    algorithm, hex_ = parse_digest(digest)
    if algorithm != "sha256":
        raise ValueError("the blob store addresses content by sha256 only")
    return "sha256:" + hex_


def _update_all(hasher: Any, pieces: list[bytes | bytearray | memoryview]) -> None:
    for piece in pieces:
        hasher.update(piece)


def check_growth(written: int, pieces: list[bytes | bytearray | memoryview], expected_size: int) -> int:
    """The byte count after ``pieces``; BlobTooLarge past the declared size (an oversize body stops early)."""
    total = written + sum(len(p) for p in pieces)
    if total > expected_size:
        raise BlobTooLarge(f"body is larger than the declared size of {expected_size} bytes")
    return total


class BlobHashes:
    """Everything a blob is hashed into on the way in: whole-file SHA-256, BLAKE3 and the chunk list.

    Shared by every store's writer. The two SHA-256 passes (whole file, chunk list) are the per-byte cost of an
    upload; for a large batch the whole-file pass runs on a helper thread beside the other two, so together they
    take the time of one. Each piece is hashed and handed on while it is still in the CPU cache, which is why
    pieces are not joined into one big buffer first.
    """

    def __init__(self) -> None:
        self._sha256 = hashlib.sha256()
        self._blake3 = blake3.blake3()
        self._chunks = ChunkHasher()

    def update(self, pieces: list[bytes | bytearray | memoryview], consume: Callable[[memoryview], None]) -> None:
        """Hash ``pieces`` and pass each to ``consume`` (which stores it)."""
        total = sum(len(p) for p in pieces)
        whole = _HASH_POOL.submit(_update_all, self._sha256, pieces) if total >= PARALLEL_HASH_MIN else None
        try:
            for piece in pieces:
                view = memoryview(piece)
                if whole is None:
                    self._sha256.update(view)
                self._blake3.update(view)
                self._chunks.update(view)
                consume(view)
        finally:
            if whole is not None:
                whole.result()

    def check(self, digest: str | None, written: int, expected_size: int) -> str:
        """The body's SHA-256 digest; refuses a body of the wrong size or, when ``digest`` is given, one that does
        not hash to it (before anything becomes visible)."""
        if written != expected_size:
            raise BlobSizeMismatch(f"body has {written} bytes, {expected_size} were declared")
        actual = "sha256:" + self._sha256.hexdigest()
        if digest is not None and actual != digest:
            raise BlobDigestMismatch(f"body hashes to {actual}, not {digest}")
        return actual

    def finish(self) -> tuple[str, ChunkList]:
        """The BLAKE3 digest and the chunk list, once the body checked out."""
        return "blake3:" + self._blake3.hexdigest(), self._chunks.finish()


class LocalBlobStore:
    """Blobs under ``root/sha256/ab/cd/<hex>``, temp files under ``root/tmp``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp_dir = root / "tmp"
        root.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_url(cls, url: str) -> LocalBlobStore:
        parsed = urlparse(url)
        if parsed.scheme not in ("file", ""):
            raise ValueError(f"unsupported blob store {url!r}: only file:// is available in this build")
        return cls(Path(parsed.path if parsed.scheme else url))

    @property
    def url(self) -> str:
        return f"file://{self.root}"

    @property
    def can_presign(self) -> bool:
        """A local directory has no URL a client could fetch from: downloads go through the API."""
        return False

    def path_for(self, digest: str) -> Path:
        _algorithm, hex_ = parse_digest(digest)
        return self.root / "sha256" / hex_[:2] / hex_[2:4] / hex_

    def exists(self, digest: str, size: int | None = None) -> bool:
        try:
            st = self.path_for(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def writer(self, digest: str, expected_size: int) -> BlobWriter:
        return BlobWriter(self, digest, expected_size)

    def unnamed_writer(self, expected_size: int) -> BlobWriter:
        """A writer whose bytes are stored under the digest they hash to (known once ``commit`` returns)."""
        return BlobWriter(self, None, expected_size)

    def stat(self, digest: str) -> tuple[int, datetime] | None:
        """Size and last write time of a stored blob, or None."""
        try:
            st = self.path_for(digest).stat()
        except FileNotFoundError:
            return None
        return st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)

    def iter_digests(self) -> Iterator[tuple[str, int, datetime]]:
        """Every stored blob: digest, size and last write time (files that are not blobs are skipped)."""
        base = self.root / "sha256"
        if not base.is_dir():
            return
        for path in sorted(base.glob("*/*/*")):
            name = path.name
            if len(name) != 64 or path.parent.name != name[2:4] or path.parent.parent.name != name[:2]:
                continue
            if all(c in "0123456789abcdef" for c in name) and path.is_file():
                found = self.stat("sha256:" + name)
                if found is not None:
                    yield ("sha256:" + name, *found)

    def delete(self, digest: str) -> None:
        self.path_for(digest).unlink(missing_ok=True)

    @contextmanager
    def open_read(self, digest: str, start: int = 0) -> Iterator[BinaryIO]:
        """The stored file, positioned at ``start`` (FileNotFoundError when there is no such blob)."""
        with open(self.path_for(digest), "rb") as fh:
            if start:
                fh.seek(start)
            yield fh

    @contextmanager
    def local_copy(self, digest: str, spool_dir: Path, max_bytes: int) -> Iterator[Path]:
        """The blob as a file a scanner can open: here the stored file itself (no copy; readers never write)."""
        path = self.path_for(digest)
        if not path.is_file():
            raise FileNotFoundError(str(path))
        yield path

    def presigned_get(self, digest: str, expires_s: int, filename: str | None = None) -> str:
        raise NotImplementedError("a local blob directory cannot issue download URLs")

    def ready(self) -> str | None:
        """None when blobs can be stored and read here, else why not (for ``/v1/ready``)."""
        if not self.root.is_dir():
            return f"blob directory {self.root} is missing"
        if not os.access(self.root, os.R_OK | os.W_OK | os.X_OK):
            return f"blob directory {self.root} is not readable and writable"
        return None

    def sweep_temp(self, older_than_s: float = 0) -> int:
        """Remove temp files left by crashed uploads; returns how many were removed.

        Several replicas may share one store, so a file is removed only when its writer is known to be gone:
        it was written on this host (the name says so) by a process that no longer runs, or nobody has written
        to it for ``older_than_s`` seconds (a live upload keeps touching its file; one on another host whose
        process died is reclaimed this way).
        """
        if not self.tmp_dir.exists():
            return 0
        now, removed = time.time(), 0
        for tmp in self.tmp_dir.glob("*.part"):
            try:
                if _writer_gone(tmp.name) or now - tmp.stat().st_mtime >= older_than_s:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


UNNAMED = "unnamed"  # the temp-file tag of an upload whose digest is not known yet
HOST_TAG = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64] or "host"


def temp_name(hex_digest: str) -> str:
    """``<sha256>.<host>.<pid>.<ns>.part``: who is writing it, so a restart can tell a dead upload from a live one."""
    return f"{hex_digest}.{HOST_TAG}.{os.getpid()}.{time.monotonic_ns()}.part"


def _writer_gone(name: str) -> bool:
    """Whether the temp file ``name`` belongs to a process of this host that is no longer running."""
    parts = name.split(".")
    if len(parts) != 5 or parts[1] != HOST_TAG or not parts[2].isdigit():
        return False  # another host's (or an older naming): only its age can tell
    pid = int(parts[2])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, owned by another user
    return False


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
