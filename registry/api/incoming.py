"""Push step 2 before step 1: a blob uploaded while its sender is still hashing it, named by the server.

``mir push`` must know every file's SHA-256 to open a version, and hashing a large file takes as long as a
fast link needs to send it. So the client sends large files here at once, while it hashes them: the registry
hashes the bytes as they arrive, stores them under the digest they hash to, records that the namespace holds
them, and answers with that digest. When the client's own hashing ends, it opens the version; what arrived is
no longer missing, and the client compares the answered digest with its own (a file that changed meanwhile
fails the push). The server's digest is computed from the bytes, never taken from the caller, so holding a
blob still always means having sent its bytes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from registry.api.blobs import upload_errors
from registry.api.refs import Namespace
from registry.api.responses import BINARY, BlobStored
from registry.artifacts.uploads import receive_unnamed_blob, record_one_received
from registry.auth.tokens import Context, CurrentPrincipal
from registry.core.errors import ApiError

router = APIRouter(prefix="/v1/namespaces", tags=["blobs"])


@router.post(
    "/{namespace}/blobs",
    response_model=BlobStored,
    # An empty body is an empty file (``size`` 0), so the body is not required.
    openapi_extra={"requestBody": {"required": False, "content": BINARY,
                                   "description": "the file's bytes, with a Content-Length"}},
)
async def upload_unnamed_blob(
    namespace: Namespace, request: Request, ctx: Context, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Store the body (``Content-Length`` bytes) under the SHA-256 it hashes to, held by ``namespace``.

    The bytes are always written, whoever holds them already, so the answer says nothing about other tenants.
    A body shorter or longer than its ``Content-Length`` stores nothing.
    """
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise ApiError(411, "length_required", "send the blob with a Content-Length header")
    size = int(length)
    if size > ctx.settings.max_blob_size:
        raise ApiError(413, "blob_too_large", f"a body of {size} bytes is larger than the registry's blob limit")
    with upload_errors():
        digest, stored = await receive_unnamed_blob(ctx.blobs, size, request.stream())
    await run_in_threadpool(record_one_received, ctx, namespace, digest, size, stored, principal.name)
    return {"digest": digest, "size": size, "stored": "new"}
