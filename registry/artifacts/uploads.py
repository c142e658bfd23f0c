"""Receiving one blob from an HTTP body (or inline in a push's open request): stream, hash, commit atomically,
or leave nothing behind; then record it.

Shared by the mir push routes and the Hugging Face LFS upload route; each maps
the exceptions (BlobTooLarge, BlobSizeMismatch, BlobDigestMismatch,
ClientDisconnect) to its own protocol's error shape.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from registry.artifacts.gc import hold_blobs_against_gc
from registry.artifacts.holdings import record_holding
from registry.artifacts.integrity import clear_marks
from registry.artifacts.versions import BlobRecord, record_blobs
from registry.core.blob_stores import BlobSink, BlobStore
from registry.core.blobstore import BlobTooLarge
from registry.core.chunks import ChunkList
from registry.core.context import RegistryContext
from registry.core.errors import ApiError

BATCH = 4 << 20  # bytes handed to the worker thread at a time


@dataclass(frozen=True)
class StoredBlob:
    """What hashing the bytes on the way in produced, to be recorded with the blob row."""

    blake3: str
    chunks: ChunkList


async def receive_blob(store: BlobStore, digest: str, size: int, body: AsyncIterator[bytes]) -> StoredBlob:
    """Write ``body`` as blob ``digest`` of exactly ``size`` bytes; return its BLAKE3 digest and chunk list.

    The body's pieces are gathered (not copied) into batches of about ``BATCH`` bytes; a batch is hashed and
    written on a worker thread while the event loop receives the next one, so receiving overlaps hashing and
    the event loop never hashes. Memory per upload: two batches. On any failure the temp file is removed and
    nothing becomes visible.
    """
    writer = await run_in_threadpool(store.writer, digest, size)
    return await _receive(writer, size, body)


async def receive_unnamed_blob(store: BlobStore, size: int, body: AsyncIterator[bytes]) -> tuple[str, StoredBlob]:
    """Like ``receive_blob`` for bytes whose digest the sender does not give: they are stored under the
    SHA-256 they hash to, which is returned with the other hashes."""
    writer = await run_in_threadpool(store.unnamed_writer, size)
    stored = await _receive(writer, size, body)
    assert writer.digest is not None
    return writer.digest, stored


async def _receive(writer: BlobSink, size: int, body: AsyncIterator[bytes]) -> StoredBlob:
    pending: asyncio.Future[None] | None = None
    batch: list[bytes | bytearray | memoryview] = []
    batched = received = 0
    try:
        async for piece in body:
            if not piece:
                continue
            received += len(piece)
            if received > size:
                raise BlobTooLarge(f"body is larger than the declared size of {size} bytes")
            batch.append(piece)
            batched += len(piece)
            if batched >= BATCH:
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(run_in_threadpool(writer.write_pieces, batch))
                batch, batched = [], 0
        if pending is not None:
            await pending
            pending = None
        if batch:
            await run_in_threadpool(writer.write_pieces, batch)
        await run_in_threadpool(writer.commit)
    except BaseException:
        if pending is not None:
            await asyncio.gather(pending, return_exceptions=True)  # the worker must be done with the file
        # Off the event loop: an object store's abort waits for the part in flight (up to a part's size).
        await asyncio.shield(run_in_threadpool(writer.abort))
        raise
    assert writer.blake3_digest is not None and writer.chunks is not None
    return StoredBlob(writer.blake3_digest, writer.chunks)


def store_bytes(store: BlobStore, digest: str, content: bytes) -> StoredBlob:
    """Write ``content`` as blob ``digest`` (a small file sent inline): checked against the digest like any
    upload, and written even when the store has it (skipping would answer faster when another tenant stored the
    same bytes). Raises BlobDigestMismatch and leaves nothing behind when the bytes are not the digest's."""
    writer = store.writer(digest, len(content))
    try:
        writer.write(content)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    assert writer.blake3_digest is not None and writer.chunks is not None
    return StoredBlob(writer.blake3_digest, writer.chunks)


def record_one_received(
    ctx: RegistryContext, namespace: str, digest: str, size: int, stored: StoredBlob, actor: str
) -> None:
    """``record_received`` of one uploaded blob, in a transaction of its own (the upload routes)."""
    with ctx.transaction() as s:
        record_received(s, ctx.blobs, namespace, {digest: (size, stored)}, actor)


def record_received(
    session: Session, store: BlobStore, namespace: str, received: Mapping[str, tuple[int, StoredBlob]], actor: str
) -> None:
    """Bytes arrived and hashed right (``digest -> (size, hashes)``): the blobs exist, the pushing namespace
    holds them, and stored copies that were marked corrupt have just been replaced by them. A constant number
    of statements for any number of blobs (a push of many small files), plus one store check each."""
    hold_blobs_against_gc(session)
    for digest, (size, _stored) in received.items():
        # A collection that ran between the write and this transaction may have removed bytes that had been
        # stored before and become unreferenced: then they must be sent again rather than recorded.
        if not store.exists(digest, size):
            raise ApiError(503, "upload_collected",
                           "the blob was garbage-collected while it uploaded: send it again")
    new = record_blobs(session, [BlobRecord(d, size, stored.blake3, stored.chunks)
                                 for d, (size, stored) in received.items()])
    record_holding(session, namespace, received)
    # A blob whose row this transaction inserted cannot have been marked corrupt: one statement fewer per push
    clear_marks(session, sorted(d for d in received if d not in new), actor=actor, detected_by="upload")
