"""Receiving one blob from an HTTP body: stream, hash, commit atomically, or leave nothing behind.

Shared by the mir push route and the Hugging Face LFS upload route; each maps
the exceptions (BlobTooLarge, BlobSizeMismatch, BlobDigestMismatch,
ClientDisconnect) to its own protocol's error shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool

from registry.blobstore import LocalBlobStore


async def receive_blob(store: LocalBlobStore, digest: str, size: int, body: AsyncIterator[bytes]) -> str:
    """Write ``body`` as blob ``digest`` of exactly ``size`` bytes and return its BLAKE3 digest.

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
    assert writer.blake3_digest is not None
    return writer.blake3_digest
