"""Receiving one blob from an HTTP body: stream, hash, commit atomically, or leave nothing behind.

Shared by the mir push route and the Hugging Face LFS upload route; each maps
the exceptions (BlobTooLarge, BlobSizeMismatch, BlobDigestMismatch,
ClientDisconnect) to its own protocol's error shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from registry.core.blobstore import LocalBlobStore
from registry.core.chunks import ChunkList


@dataclass(frozen=True)
class StoredBlob:
    """What hashing the bytes on the way in produced, to be recorded with the blob row."""

    blake3: str
    chunks: ChunkList


async def receive_blob(store: LocalBlobStore, digest: str, size: int, body: AsyncIterator[bytes]) -> StoredBlob:
    """Write ``body`` as blob ``digest`` of exactly ``size`` bytes; return its BLAKE3 digest and chunk list.

    On any failure the temp file is removed and nothing becomes visible.
    """
    writer = await run_in_threadpool(store.writer, digest, size)
    try:
        async for chunk in body:
            if chunk:
                writer.write(chunk)
        await run_in_threadpool(writer.commit)
    except BaseException:
        writer.abort()
        raise
    assert writer.blake3_digest is not None and writer.chunks is not None
    return StoredBlob(writer.blake3_digest, writer.chunks)
