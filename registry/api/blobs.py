"""Push step 2: stream one blob in, hashing while writing; and pull: stream a file out."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from registry.api.refs import (
    BlobDigest,
    Name,
    Namespace,
    VersionName,
    VersionRef,
    checked_digest,
    checked_repo,
    checked_version,
)
from registry.api.responses import BINARY, BinaryResponse, BlobStored
from registry.artifacts.holdings import held_by
from registry.artifacts.integrity import Where
from registry.artifacts.models import VersionFile
from registry.artifacts.serve import BlobUnavailable, ServedFile, serve_blob
from registry.artifacts.uploads import receive_blob, record_one_received
from registry.artifacts.versions import OPEN, find_version, get_artifact, resolve_ref
from registry.auth.tokens import Context, CurrentPrincipal
from registry.core.blobstore import BlobDigestMismatch, BlobSizeMismatch, BlobTooLarge
from registry.core.errors import ApiError, error_body
from registry.lineage import quarantine
from registry.web.headers import header_value
from signing.paths import InvalidPathError, validate_relative_path

router = APIRouter(prefix="/v1/artifacts", tags=["blobs"])


def _declared_size(ctx: Any, namespace: str, name: str, version: str, digest: str) -> tuple[int, bool]:
    """The size the open version's manifest declares for ``digest``, and whether the namespace already holds it."""
    with ctx.transaction() as s:
        art = get_artifact(s, namespace, name)
        row = find_version(s, art, version)
        if row is None:
            raise ApiError(404, "version_not_found", f"{namespace}/{name}@{version} has not been opened")
        if row.state != OPEN:
            raise ApiError(409, "version_exists", f"{namespace}/{name}@{version} is committed; nothing to upload")
        size = s.scalar(
            select(VersionFile.size).where(VersionFile.version_id == row.id, VersionFile.digest == digest).limit(1)
        )
        if size is None:
            raise ApiError(400, "digest_not_in_manifest", f"{digest} is not part of {namespace}/{name}@{version}")
        return size, digest in held_by(s, ctx.blobs, namespace, {digest: size})


@router.put(
    "/{namespace}/{name}/versions/{version}/blobs/{digest}",
    response_model=BlobStored,
    openapi_extra={"requestBody": {"required": True, "content": BINARY}},
)
async def upload_blob(
    namespace: Namespace,
    name: Name,
    version: VersionName,
    digest: BlobDigest,
    request: Request,
    ctx: Context,
    principal: CurrentPrincipal,
) -> dict[str, Any]:
    namespace, name = checked_repo(namespace, name)
    version = checked_version(version)
    digest = checked_digest(digest)
    size, stored = await run_in_threadpool(_declared_size, ctx, namespace, name, version, digest)
    if stored:
        return {"digest": digest, "size": size, "stored": "already"}
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > size:
        raise ApiError(413, "size_mismatch", f"body of {length} bytes is larger than the declared {size} bytes")
    with upload_errors():
        stored_blob = await receive_blob(ctx.blobs, digest, size, request.stream())
    await run_in_threadpool(record_one_received, ctx, namespace, digest, size, stored_blob, principal.name)
    return {"digest": digest, "size": size, "stored": "new"}


@contextmanager
def upload_errors() -> Iterator[None]:
    """A body that does not match what was declared, as the /v1 upload routes answer it (nothing is stored)."""
    try:
        yield
    except BlobSizeMismatch as exc:
        raise ApiError(413 if isinstance(exc, BlobTooLarge) else 400, "size_mismatch", str(exc)) from exc
    except BlobDigestMismatch as exc:
        raise ApiError(400, "digest_mismatch", str(exc)) from exc
    except ClientDisconnect as exc:
        raise ApiError(400, "upload_incomplete", "client disconnected before the body was complete") from exc


@router.get(
    "/{namespace}/{name}/versions/{ref}/files/{path:path}",
    response_class=BinaryResponse,
    responses={200: {"content": BINARY}, 206: {"description": "The requested byte range", "content": BINARY}},
)
def download_file(
    namespace: Namespace,
    name: Name,
    ref: VersionRef,
    path: str,
    ctx: Context,
    principal: CurrentPrincipal,
    request: Request,
    override_quarantine: bool = Query(False, description="admin only, audited: download a quarantined version"),
) -> Response:
    """Stream one file of a committed version (supports HTTP Range for resumed downloads).

    A quarantined version is refused (403 ``version_quarantined``) unless an admin overrides; a version
    affected by a quarantined ancestor is served with ``X-Mir-Quarantine: affected``. Every byte is checked
    against the digest as it goes out (see ``registry.artifacts.serve``): stored bytes that fail are never
    completed, and from then on the file answers 500 ``blob_corrupt`` (or ``blob_missing``).
    """
    namespace, name = checked_repo(namespace, name)
    try:
        validate_relative_path(path)
    except InvalidPathError as exc:
        raise ApiError(400, "invalid_path", str(exc)) from exc
    with ctx.transaction() as s:
        art = get_artifact(s, namespace, name)
        row = resolve_ref(s, art, checked_version(ref))
        entry = s.get(VersionFile, (row.id, path))
        if entry is None:
            raise ApiError(404, "file_not_found", f"{path} is not part of {namespace}/{name}@{row.version}")
        digest, size = entry.digest, entry.size
        where = Where(namespace, name, row.version)
        flagged = quarantine.download_gate(
            s, row, is_admin=principal.is_admin, actor=principal.name, override=override_quarantine, path=path,
            can_read=principal.can_read,
        )
    headers = {
        "ETag": f'"{digest.removeprefix("sha256:")}"',
        "X-Mir-Digest": digest,
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
    }
    if flagged is not None:
        headers["X-Mir-Quarantine"] = flagged["status"]
        sources = ", ".join(q["version"] or "hidden" for q in flagged["sources"])
        headers["X-Mir-Quarantine-Sources"] = header_value(sources)
    return serve_blob(ctx, request, ServedFile(digest, size, path, where), headers, _error_response)


def _error_response(exc: BlobUnavailable) -> Response:
    return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status)
