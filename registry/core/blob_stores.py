"""The one interface every blob store offers, and the choice of store from settings.

The registry reads and writes blobs only through ``BlobStore``, so the same code runs on a local directory
(``file://``, the embedded default) and on an S3-compatible object store (``s3://bucket/prefix``) by changing
``MIR_BLOB_STORE`` alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Protocol

from registry.core.blobstore import LocalBlobStore
from registry.core.chunks import ChunkList
from registry.core.settings import Settings


class BlobSink(Protocol):
    """One blob being written: hashed as it streams, visible under its digest only after ``commit``.

    ``digest`` is None until ``commit`` for an unnamed writer (the bytes are stored under what they hash to).
    """

    digest: str | None
    written: int
    blake3_digest: str | None
    chunks: ChunkList | None

    def write(self, chunk: bytes | bytearray | memoryview) -> None: ...
    def write_pieces(self, pieces: list[bytes | bytearray | memoryview]) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


class BlobReader(Protocol):
    """Sequential reads of one stored blob; ``read(n)`` returns n bytes, fewer only at the end."""

    def read(self, n: int) -> bytes: ...


class BlobStore(Protocol):
    """Content-addressed blob storage (see ``LocalBlobStore`` and ``S3BlobStore``)."""

    @property
    def url(self) -> str: ...
    @property
    def can_presign(self) -> bool: ...

    def exists(self, digest: str, size: int | None = None) -> bool: ...
    def stat(self, digest: str) -> tuple[int, datetime] | None: ...
    def writer(self, digest: str, expected_size: int) -> BlobSink: ...
    def unnamed_writer(self, expected_size: int) -> BlobSink: ...
    def open_read(self, digest: str, start: int = 0) -> AbstractContextManager[BlobReader]: ...
    def local_copy(self, digest: str, spool_dir: Path, max_bytes: int) -> AbstractContextManager[Path]: ...
    def presigned_get(self, digest: str, expires_s: int, filename: str | None = None) -> str: ...
    def delete(self, digest: str) -> None: ...
    def iter_digests(self) -> Iterator[tuple[str, int, datetime]]: ...
    def ready(self) -> str | None: ...
    def sweep_temp(self, older_than_s: float = 0) -> int: ...


def open_blob_store(settings: Settings) -> BlobStore:
    """The store ``MIR_BLOB_STORE`` names: ``s3://bucket/prefix`` or a local directory (``file://`` or a path)."""
    url = settings.resolved_blob_store
    if url.startswith("s3://"):
        # boto3 costs a third of a second to import: only processes that use an object store pay it.
        from registry.core.s3_blobstore import S3BlobStore

        return S3BlobStore.from_url(url, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
                                    public_endpoint_url=settings.s3_public_endpoint_url)
    return LocalBlobStore.from_url(url)


def read_all(store: BlobStore, digest: str, limit: int) -> bytes:
    """A small blob's bytes (at most ``limit``; a longer one raises ValueError rather than filling memory)."""
    with store.open_read(digest) as reader:
        data = reader.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"blob {digest} is larger than {limit} bytes")
    return data
