"""Push step 2: stream one blob in, hashing while writing; and pull: stream a file out."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from registry import quarantine
from registry.api.refs import checked_digest, checked_repo, checked_version
from registry.auth import Context, CurrentPrincipal
from registry.blob_upload import receive_blob
from registry.blobstore import BlobDigestMismatch, BlobSizeMismatch, BlobTooLarge
from registry.errors import ApiError
from registry.models import VersionFile
from registry.versions import OPEN, find_version, get_artifact, record_blob, resolve_ref
from signing.paths import InvalidPathError, validate_relative_path

router = APIRouter(prefix="/v1/artifacts", tags=["blobs"])


def _declared_size(ctx: Any, namespace: str, name: str, version: str, digest: str) -> tuple[int, bool]:
    """The size the open version's manifest declares for ``digest``, and whether the blob is already stored."""
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
        return size, ctx.blobs.exists(digest, size)


@router.put("/{namespace}/{name}/versions/{version}/blobs/{digest}")
async def upload_blob(
    namespace: str, name: str, version: str, digest: str, request: Request, ctx: Context, principal: CurrentPrincipal
) -> dict[str, Any]:
    namespace, name = checked_repo(namespace, name)
    version = checked_version(version)
    digest = checked_digest(digest)
    principal.require_write(namespace)
    size, stored = await run_in_threadpool(_declared_size, ctx, namespace, name, version, digest)
    if stored:
        await run_in_threadpool(_record, ctx, digest, size)
        return {"digest": digest, "size": size, "stored": "already"}
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > size:
        raise ApiError(413, "size_mismatch", f"body of {length} bytes is larger than the declared {size} bytes")
    try:
        blake3_digest = await receive_blob(ctx.blobs, digest, size, request.stream())
    except BlobSizeMismatch as exc:
        raise ApiError(413 if isinstance(exc, BlobTooLarge) else 400, "size_mismatch", str(exc)) from exc
    except BlobDigestMismatch as exc:
        raise ApiError(400, "digest_mismatch", str(exc)) from exc
    except ClientDisconnect as exc:
        raise ApiError(400, "upload_incomplete", "client disconnected before the body was complete") from exc
    await run_in_threadpool(_record, ctx, digest, size, blake3_digest)
    return {"digest": digest, "size": size, "stored": "new"}


def _record(ctx: Any, digest: str, size: int, blake3_digest: str | None = None) -> None:
    with ctx.transaction() as s:
        record_blob(s, digest, size, blake3_digest)


@router.get("/{namespace}/{name}/versions/{ref}/files/{path:path}")
def download_file(
    namespace: str,
    name: str,
    ref: str,
    path: str,
    ctx: Context,
    principal: CurrentPrincipal,
    override_quarantine: bool = Query(False, description="admin only, audited: download a quarantined version"),
) -> FileResponse:
    """Stream one file of a committed version (supports HTTP Range for resumed downloads).

    A quarantined version is refused (403 ``version_quarantined``) unless an admin overrides; a version
    affected by a quarantined ancestor is served with ``X-Mir-Quarantine: affected``.
    """
    namespace, name = checked_repo(namespace, name)
    principal.require_read(namespace)
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
        flagged = quarantine.download_gate(
            s, row, is_admin=principal.is_admin, actor=principal.name, override=override_quarantine, path=path,
            can_read=principal.can_read,
        )
    blob_path = ctx.blobs.path_for(digest)
    if not ctx.blobs.exists(digest, size):
        raise ApiError(500, "blob_missing", f"the stored content of {path} is missing; the registry needs repair")
    response = FileResponse(
        blob_path,
        media_type="application/octet-stream",
        headers={
            "ETag": f'"{digest.removeprefix("sha256:")}"',
            "X-Mir-Digest": digest,
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
        },
    )
    if flagged is not None:
        response.headers["X-Mir-Quarantine"] = flagged["status"]
        response.headers["X-Mir-Quarantine-Sources"] = ", ".join(q["version"] or "hidden" for q in flagged["sources"])
    response.chunk_size = ctx.settings.chunk_size
    return response
