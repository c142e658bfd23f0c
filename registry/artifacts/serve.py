"""Serving stored blob bytes, each checked against its digest on the way out.

A whole file is read in chunks and the last chunk is held back until every
byte checked out: each chunk against the chunk list recorded at upload (which
was itself computed from bytes that matched the digest), or, for a blob without
a list, the whole file against its SHA-256. A Range answer reads the
chunks that cover the range whole and checks each before any byte of it is
sent. On a mismatch the blob is marked corrupt (audited) and the response is
cut off: the headers promised a length, so no client takes the short body for
the file. A blob already marked, or whose file is gone, is refused before
anything is sent (500 ``blob_corrupt`` / ``blob_missing``).

Blobs stored before chunk lists existed get theirs on the first whole-file
read that verifies; until then a Range request on them is answered with the
whole (verified) file and status 200, which HTTP allows and clients handle.
Memory per response is bounded by the chunk size (three chunks: the one held
back, the one being sent, and the next one being read and checked meanwhile).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from registry.artifacts import integrity as blob_integrity
from registry.artifacts.integrity import Where
from registry.core.blobstore import BlobStoreUnavailable
from registry.core.chunks import CHUNK_SIZE, ChunkList, chunk_count

log = logging.getLogger("mir.blobs")
_PAGE = 1024  # chunk hashes fetched at a time while a whole file streams (32 KiB of hashes, 1 GiB of data)
_RANGE = re.compile(r"bytes=\s*([0-9]*)\s*-\s*([0-9]*)\s*")
# Byte positions longer than this many digits are past any stored size (sizes fit in int64): they are capped
# rather than converted, since a header may carry thousands of digits (Python refuses int() past 4300 of them).
_MAX_POSITION_DIGITS = 19
_PAST_ANY_SIZE = 10**_MAX_POSITION_DIGITS


class BlobUnavailable(Exception):
    """The blob cannot be served; answered before any byte is sent."""

    def __init__(self, code: str, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


class BlobIntegrityError(Exception):
    """The bytes read do not match what the digest or chunk list says: the blob was just marked corrupt."""


@dataclass(frozen=True)
class ServedFile:
    """One file of a version the caller may read: what to serve, and where it belongs (for the audit entry)."""

    digest: str
    size: int
    path: str
    where: Where


ErrorResponse = Callable[[BlobUnavailable], Response]


def serve_blob(
    ctx: Any, request: Request, served: ServedFile, headers: dict[str, str], error: ErrorResponse
) -> Response:
    """The response to GET or HEAD of ``served``: 200, 206 for a single satisfiable range, 416, or ``error(...)``."""
    try:
        chunk_size = _servable(ctx, served)
    except BlobUnavailable as exc:
        return error(exc)
    headers = {**headers, "Accept-Ranges": "bytes"}
    if ctx.settings.blob_downloads == "redirect" and ctx.blobs.can_presign:
        return _redirect(ctx, served, headers, error)
    if request.method == "HEAD":
        return Response(status_code=200, headers={**headers, "Content-Length": str(served.size)},
                        media_type="application/octet-stream")
    try:
        span = _wanted_range(request, served.size, headers.get("ETag"))
    except _Unsatisfiable:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{served.size}"})
    if span is not None and chunk_size is not None:
        start, end = span
        body = _range_chunks(ctx, served, start, end)
        headers.update({"Content-Range": f"bytes {start}-{end}/{served.size}", "Content-Length": str(end - start + 1)})
        return CheckedResponse(body, 206, headers, error)
    return CheckedResponse(_whole_file(ctx, served, chunk_size), 200,
                           {**headers, "Content-Length": str(served.size)}, error)


def _redirect(ctx: Any, served: ServedFile, headers: dict[str, str], error: ErrorResponse) -> Response:
    """302 to a short-lived URL of the store for this one blob, after every check a proxied answer passes.

    The bytes then bypass the API, so the API cannot check them on the way: ``mir pull`` and the SDK hash what
    they receive and refuse a mismatch; huggingface_hub checks the size only, so a blob corrupted in the store
    reaches it until ``mir fsck`` (which re-hashes every object from the store) marks it, after which no URL is
    issued for it. ``MIR_BLOB_DOWNLOADS=proxy`` keeps every byte checked by the API instead.
    """
    try:
        url = ctx.blobs.presigned_get(served.digest, ctx.settings.presigned_url_ttl_s,
                                      filename=served.path.rsplit("/", 1)[-1])
    except BlobStoreUnavailable as exc:
        log.error("no download URL for %s: %s", served.digest, exc)  # the store's words stay in the log
        return error(BlobUnavailable("blob_store_unavailable", "the blob store cannot issue a download URL right "
                                     "now; retry shortly", 503))
    kept = {k: v for k, v in headers.items() if k.lower() not in ("content-disposition", "accept-ranges")}
    return Response(status_code=302, headers={**kept, "Location": url, "Cache-Control": "no-store",
                                              "X-Mir-Size": str(served.size)})


def _servable(ctx: Any, served: ServedFile) -> int | None:
    """Refuse a marked or missing blob (marking a missing one); else the chunk size of its list, if recorded."""
    with ctx.transaction() as s:  # the mark must be committed, so the refusal is raised after the transaction
        present = ctx.blobs.exists(served.digest, served.size)
        reason = blob_integrity.corrupt_reason(s, served.digest)
        why = None if present else blob_integrity.missing_reason(ctx.blobs, served.digest, served.size)
        if why is not None and reason is None:
            blob_integrity.mark_corrupt(s, served.digest, served.size, why, detected_by="download",
                                        where=served.where, path=served.path)
        chunk_size = blob_integrity.chunk_size_of(s, served.digest) if why is None and reason is None else None
    if why is not None:
        gone = ctx.blobs.stat(served.digest) is None
        raise BlobUnavailable("blob_missing" if gone else "blob_corrupt",
                              f"the stored content of {served.path} is unusable ({why}); the registry needs "
                              "repair (mir fsck)")
    if reason is not None:
        raise BlobUnavailable("blob_corrupt", f"the stored content of {served.path} failed its integrity check "
                              f"({reason}); it is not served until an operator repairs it (mir fsck)")
    return chunk_size


class _Unsatisfiable(Exception):
    """The range starts past the end of the file: 416."""


def _wanted_range(request: Request, size: int, etag: str | None) -> tuple[int, int] | None:
    """The one byte range to send, or None for the whole file; raises ``_Unsatisfiable``.

    Several ranges, a malformed header, or an ``If-Range`` that does not name this content are answered with
    the whole file, as HTTP allows.
    """
    header = request.headers.get("range")
    if header is None:
        return None
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None
    if not match[1]:
        suffix = _position(match[2])
        if suffix == 0 or size == 0:
            raise _Unsatisfiable
        return max(0, size - suffix), size - 1
    start = _position(match[1])
    end = _position(match[2]) if match[2] else size - 1
    if match[2] and end < start:
        return None
    if start >= size:
        raise _Unsatisfiable
    return start, min(end, size - 1)


def _position(digits: str) -> int:
    """A byte position from a Range header; any number longer than every file size reads as ``_PAST_ANY_SIZE``."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= _MAX_POSITION_DIGITS else _PAST_ANY_SIZE


def _corrupt(ctx: Any, served: ServedFile, reason: str, detected_by: str) -> BlobIntegrityError:
    with ctx.transaction() as s:
        blob_integrity.mark_corrupt(s, served.digest, served.size, reason, detected_by=detected_by,
                                    where=served.where, path=served.path)
    log.warning("blob %s (%s) is corrupt: %s; marked, and not served", served.digest, served.path,
                reason)
    return BlobIntegrityError(reason)


def _whole_file(ctx: Any, served: ServedFile, chunk_size: int | None) -> Iterator[bytes]:
    """Every byte, each chunk checked (one SHA-256 pass); the last one only after the whole file checked out."""
    known = chunk_size is not None
    size_of_chunk = chunk_size or CHUNK_SIZE
    computed: list[bytes] = []
    page = ChunkList(size_of_chunk, b"")
    page_start = 0
    whole = hashlib.sha256()
    pending: bytes | None = None
    sent = 0
    with ctx.blobs.open_read(served.digest) as fh:
        for index in range(chunk_count(served.size, size_of_chunk)):
            data = fh.read(size_of_chunk)
            if len(data) != min(size_of_chunk, served.size - sent):
                raise _corrupt(ctx, served, f"the stored file ended after {sent + len(data)} of {served.size} "
                                            "bytes", "download")
            actual = hashlib.sha256(data).digest()
            if known:
                if index >= page_start + len(page):
                    page_start, page = index, _hashes(ctx, served.digest, index, _PAGE)
                if actual != page.hash_of(index - page_start):
                    raise _corrupt(ctx, served, f"chunk {index} (bytes {sent}-{sent + len(data) - 1}) does not "
                                                "match the chunk list recorded at upload", "download")
            else:
                computed.append(actual)
                whole.update(data)
            sent += len(data)
            if pending is not None:
                yield pending
            pending = data
        if fh.read(1):
            raise _corrupt(ctx, served, f"the stored file is longer than {served.size} bytes", "download")
    if not known and "sha256:" + whole.hexdigest() != served.digest:
        raise _corrupt(ctx, served, f"the stored bytes hash to sha256:{whole.hexdigest()}", "download")
    if not known:
        with ctx.transaction() as s:
            blob_integrity.record_chunks(s, served.digest, ChunkList(size_of_chunk, b"".join(computed)))
    if pending is not None:
        yield pending


def _range_chunks(ctx: Any, served: ServedFile, start: int, end: int) -> Iterator[bytes]:
    """Bytes ``start..end``: the covering chunks are read whole and each checked before its slice is sent."""
    first_chunk = _hashes_for_range(ctx, served, start, end)
    size_of_chunk = first_chunk.chunk_size
    first, last = start // size_of_chunk, end // size_of_chunk
    with ctx.blobs.open_read(served.digest, first * size_of_chunk) as fh:
        for index in range(first, last + 1):
            offset = index * size_of_chunk
            data = fh.read(min(size_of_chunk, served.size - offset))
            expected = first_chunk.hash_of(index - first)
            if len(data) != min(size_of_chunk, served.size - offset) or hashlib.sha256(data).digest() != expected:
                raise _corrupt(ctx, served, f"chunk {index} (bytes {offset}-{offset + len(data) - 1}) does not "
                                            "match the chunk list recorded at upload", "range")
            yield data[max(0, start - offset) : end - offset + 1]


def _hashes_for_range(ctx: Any, served: ServedFile, start: int, end: int) -> ChunkList:
    with ctx.transaction() as s:
        size_of_chunk = blob_integrity.chunk_size_of(s, served.digest)
        assert size_of_chunk is not None  # checked by serve_blob before choosing a range answer
        first, last = start // size_of_chunk, end // size_of_chunk
        listed = blob_integrity.chunk_hashes(s, served.digest, first, last - first + 1)
    assert listed is not None
    if len(listed) != last - first + 1:
        raise _corrupt(ctx, served, "the recorded chunk list is shorter than the file", "range")
    return listed


def _hashes(ctx: Any, digest: str, first: int, count: int) -> ChunkList:
    with ctx.transaction() as s:
        listed = blob_integrity.chunk_hashes(s, digest, first, count)
    return listed if listed is not None else ChunkList(CHUNK_SIZE, b"")


class CheckedResponse(StreamingResponse):
    """Streams checked chunks; the first is produced before the headers, so a small file that fails its check
    gets a clean error answer, and a later failure cuts the connection instead of completing the response.

    Reading and checking chunk k+1 (a worker thread; SHA-256 releases the GIL) overlaps sending chunk k (the
    event loop), so one stream costs about max(check, send) per chunk instead of their sum. Still no byte is
    sent before its chunk checked out, and at most three chunks are held per response.
    """

    def __init__(self, body: Iterator[bytes], status: int, headers: dict[str, str], error: ErrorResponse) -> None:
        super().__init__(body, status_code=status, headers=headers, media_type="application/octet-stream")
        self._chunks = body
        self._error = error
        self._first: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            self._first = await run_in_threadpool(next, self._chunks, None)
        except BlobIntegrityError as exc:
            refused = BlobUnavailable("blob_corrupt", f"the stored content failed its integrity check ({exc}); "
                                      "it is not served until an operator repairs it (mir fsck)")
            await self._error(refused)(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        current, self._first = self._first, None
        try:
            while current is not None:
                upcoming = asyncio.ensure_future(run_in_threadpool(next, self._chunks, None))
                try:
                    if current:
                        await send({"type": "http.response.body", "body": current, "more_body": True})
                finally:
                    current = await asyncio.shield(upcoming)  # never leave the generator running unattended
        except BlobIntegrityError:
            return  # never complete the response: the server closes the connection short of the promised length
        await send({"type": "http.response.body", "body": b"", "more_body": False})
