"""Artifacts and versions: list, show, open (push step 1, which may carry small files and commit at once),
commit (push step 3), abort."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Query

from registry.api.refs import (
    Name,
    Namespace,
    NamespaceFilter,
    RowCursor,
    VersionName,
    VersionRef,
    checked_repo,
    checked_version,
)
from registry.api.responses import ArtifactPage
from registry.artifacts import listing
from registry.artifacts.holdings import missing_for_push
from registry.artifacts.uploads import StoredBlob, record_received, store_bytes
from registry.artifacts.versions import (
    COMMITTED,
    LATEST,
    abort_version,
    aliases_of,
    check_one_size_per_digest,
    find_version,
    get_artifact,
    get_or_create_artifact,
    open_version,
    resolve_ref,
    version_to_dict,
)
from registry.audit import log as audit
from registry.auth.tokens import Context, CurrentPrincipal
from registry.core.blobstore import BlobDigestMismatch
from registry.core.context import RegistryContext
from registry.core.errors import ApiError
from registry.core.names import InvalidNameError, validate_kind
from registry.core.schemas import OpenVersionRequest
from registry.lineage import edges as lineage
from registry.lineage import graph as lineage_graph
from registry.lineage import quarantine
from registry.push.commit import OpenedHere, commit_version
from registry.scanning import queue as scan_queue
from registry.scanning import results as scans
from registry.synthetic.report import with_policy
from registry.trust import signatures
from signing.manifest import InvalidManifestError, Manifest

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])


@router.get("", response_model=ArtifactPage)
def list_artifacts(
    ctx: Context,
    principal: CurrentPrincipal,
    namespace: NamespaceFilter = None,
    kind: str | None = Query(None, max_length=100),
    limit: int = Query(100, ge=1, le=1000),
    after: RowCursor = 0,
) -> dict[str, Any]:
    """Artifacts the caller may read, by id. A page holds ``limit`` of them unless the listing ends; ``next`` is
    the id of the page's last item, so a cursor never names an artifact the caller cannot read."""
    if namespace:
        checked_repo(namespace, "x")
        principal.require_read(namespace)
    with ctx.transaction() as s:
        items, following = listing.list_artifacts(
            s, readable=principal.readable_namespaces(), can_read=principal.can_read, namespace=namespace,
            kind=kind, limit=limit, after=after,
        )
        return {"items": items, "next": following}


@router.get("/{namespace}/{name}")
def show_artifact(namespace: Namespace, name: Name, ctx: Context, principal: CurrentPrincipal) -> dict[str, Any]:
    namespace, name = checked_repo(namespace, name)
    with ctx.transaction() as s:
        return listing.artifact_overview(s, get_artifact(s, namespace, name))


@router.post("/{namespace}/{name}/versions", status_code=201)
def open_version_route(
    namespace: Namespace, name: Name, body: OpenVersionRequest, ctx: Context, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Push step 1: declare the manifest; the answer lists the blobs the registry lacks."""
    namespace, name = checked_repo(namespace, name)
    version_name = checked_version(body.version)
    try:
        kind = validate_kind(body.kind)
    except InvalidNameError as exc:
        raise ApiError(400, "invalid_kind", str(exc)) from exc
    if len(body.manifest.files) > ctx.settings.max_manifest_files:
        raise ApiError(413, "manifest_too_large", f"at most {ctx.settings.max_manifest_files} files per version")
    try:
        manifest = Manifest.from_dict(body.manifest.model_dump()).check_portable()
    except InvalidManifestError as exc:
        raise ApiError(400, "invalid_manifest", str(exc)) from exc
    if not manifest.files:
        raise ApiError(400, "empty_manifest", "a version needs at least one file; the manifest lists none")
    for entry in manifest.files:
        if not entry.digest.startswith("sha256:"):
            raise ApiError(400, "invalid_manifest", f"{entry.path}: registry manifests use sha256 digests")
        if entry.size > ctx.settings.max_blob_size:
            raise ApiError(413, "blob_too_large", f"{entry.path} is larger than the registry's blob limit")
    check_one_size_per_digest(manifest)  # before the inline contents are read against those sizes
    envelopes = [signatures.parse_envelope(raw) for raw in body.signatures]
    declarations = lineage.parse_declarations(body.lineage)
    inline = _inline_contents(body.inline, manifest, ctx.settings.max_inline_push_bytes)
    received = {digest: _store_inline(ctx, digest, content) for digest, content in inline.items()}
    with ctx.transaction() as s:
        art = get_or_create_artifact(s, namespace, name, kind, principal.name)
        version, resumed = open_version(
            s, ctx.blobs, art, version_name, manifest, actor=principal.name, description=body.description
        )
        for envelope in envelopes:
            key_ids = signatures.check_pusher_signature(s, namespace, name, manifest, envelope)
            signatures.attach(s, version, envelope, key_ids, origin=signatures.PUSHER, actor=principal.name)
        lineage.declare_at_open(
            s, version, declarations, can_read=principal.can_read, actor=principal.name, resumed=resumed
        )
        wanted = {f.digest: f.size for f in manifest.files}
        missing = missing_for_push(s, ctx.blobs, namespace, wanted, principal.can_read)
        record_received(s, ctx.blobs, namespace, {d: (wanted[d], blob) for d, blob in received.items()},
                        principal.name)
        answer: dict[str, Any] = {
            "resumed": resumed,
            "missing": [d for d in missing if d not in received],
            # Inline contents the namespace did not hold (the others were already there: reused, as by uploads).
            "inline_stored": [d for d in missing if d in received],
            "upload_url": f"/v1/artifacts/{namespace}/{name}/versions/{version_name}/blobs/{{digest}}",
            "committed": False,
        }
        if body.commit and not answer["missing"]:
            # Every blob was found held (and in the store) or stored and recorded by this transaction.
            newly_committed = version.state != COMMITTED
            commit_version(s, ctx.blobs, version, actor=principal.name, signer=ctx.signer, held_here=set(wanted),
                           opened_here=None if resumed else OpenedHere(lineage_declared=bool(declarations)))
            # A version committed just now has exactly the alias its commit moved (aliases only ever point at
            # committed versions); a retried push's version may have gained others since.
            aliases = ([LATEST] if newly_committed
                       else [a for a, v in aliases_of(s, art).items() if v == version.version])
            return {**answer, "version": version_to_dict(version, aliases=aliases), "committed": True}
        return {**answer, "version": version_to_dict(version, with_files=False)}


def _inline_contents(inline: dict[str, str], manifest: Manifest, budget: int) -> dict[str, bytes]:
    """The inline contents, decoded: each names a digest of the manifest and has that file's size."""
    sizes = {f.digest: f.size for f in manifest.files}
    contents: dict[str, bytes] = {}
    total = 0
    for digest, text in inline.items():
        if digest not in sizes:
            raise ApiError(400, "digest_not_in_manifest", f"inline content for {digest[:80]!r}, which the manifest "
                           "does not list")
        total += sizes[digest]
        if total > budget:
            raise ApiError(413, "inline_too_large", f"inline contents may hold {budget} bytes in all; upload "
                           "larger files with PUT .../blobs/{digest}")
        encoded = 4 * -(-sizes[digest] // 3)  # the padded base64 of the declared size, without whitespace
        if len(text) > encoded:  # refused before decoding
            raise ApiError(400, "size_mismatch", f"inline content of {digest} has {len(text)} characters; the "
                           f"base64 of the {sizes[digest]} bytes the manifest declares has {encoded} (padded, "
                           "without whitespace or line breaks)")
        try:
            content = base64.b64decode(text, validate=True)
        except ValueError as exc:  # binascii.Error, or a character outside ASCII
            raise ApiError(400, "invalid_inline", f"inline content of {digest} is not base64: {exc}") from exc
        if len(content) != sizes[digest]:
            raise ApiError(400, "size_mismatch", f"inline content of {digest} has {len(content)} bytes; the "
                           f"manifest declares {sizes[digest]}")
        contents[digest] = content
    return contents


def _store_inline(ctx: RegistryContext, digest: str, content: bytes) -> StoredBlob:
    try:
        return store_bytes(ctx.blobs, digest, content)
    except BlobDigestMismatch as exc:
        raise ApiError(400, "digest_mismatch", f"inline content does not match {digest}") from exc


@router.post("/{namespace}/{name}/versions/{version}/commit")
def commit_version_route(
    namespace: Namespace, name: Name, version: VersionName, ctx: Context, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Push step 3: check every blob, then make the version immutable."""
    namespace, name = checked_repo(namespace, name)
    with ctx.transaction() as s:
        art = get_artifact(s, namespace, name)
        row = find_version(s, art, checked_version(version))
        if row is None:
            raise ApiError(404, "version_not_found", f"{namespace}/{name}@{version} has not been opened")
        commit_version(s, ctx.blobs, row, actor=principal.name, signer=ctx.signer)
        return version_to_dict(row, aliases=[a for a, v in aliases_of(s, art).items() if v == row.version])


@router.delete("/{namespace}/{name}/versions/{ref}", status_code=204)
def abort_version_route(
    namespace: Namespace, name: Name, ref: VersionName, ctx: Context, principal: CurrentPrincipal
) -> None:
    """Abandon an open (uncommitted) version, named exactly (not by alias). Committed versions are immutable.

    The parameter is spelled ``{ref}`` like the GET of the same URL, so the OpenAPI document has one path.
    """
    namespace, name = checked_repo(namespace, name)
    with ctx.transaction() as s:
        art = get_artifact(s, namespace, name)
        row = find_version(s, art, checked_version(ref))
        if row is None:
            raise ApiError(404, "version_not_found", f"{namespace}/{name}@{ref} not found")
        abort_version(s, row, actor=principal.name)


@router.get("/{namespace}/{name}/versions/{ref}")
def show_version(
    namespace: Namespace, name: Name, ref: VersionRef, ctx: Context, principal: CurrentPrincipal
) -> dict[str, Any]:
    """A committed version by version name or alias, with its manifest."""
    namespace, name = checked_repo(namespace, name)
    with ctx.transaction() as s:
        art = get_artifact(s, namespace, name)
        row = resolve_ref(s, art, checked_version(ref))
        aliases = [a for a, v in aliases_of(s, art).items() if v == row.version]
        data = version_to_dict(row, aliases=aliases)
        data["lineage"] = lineage_graph.parents_of(s, row, can_read=principal.can_read)
        data["quarantine"] = quarantine.quarantine_status(s, row, can_read=principal.can_read)
        data["synthetic"] = with_policy(s, row, principal.can_read)
        return data


@router.get("/{namespace}/{name}/versions/{ref}/scans")
def version_scans(
    namespace: Namespace, name: Name, ref: VersionRef, ctx: Context, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Scan verdicts of every file of a version (``status`` is ``pending`` until the workers finish)."""
    namespace, name = checked_repo(namespace, name)
    with ctx.transaction() as s:
        row = resolve_ref(s, get_artifact(s, namespace, name), checked_version(ref))
        return scans.version_scan_summary(s, row, can_read=principal.can_read)


@router.post("/{namespace}/{name}/versions/{ref}/rescan", status_code=202)
def rescan(
    namespace: Namespace, name: Name, ref: VersionRef, ctx: Context, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Re-run the scanners on every file (earlier results stay as history). Admin only; audited."""
    namespace, name = checked_repo(namespace, name)
    with ctx.transaction() as s:
        row = resolve_ref(s, get_artifact(s, namespace, name), checked_version(ref))
        previous = row.scan_status
        job = scan_queue.enqueue(s, row, rescan=True)
        audit.record(s, action="scan.requested", actor=principal.name, namespace=namespace, name=name,
                     version=row.version, details={"job": job.id, "previous_verdict": previous})
        return {"job": job.id, "status": row.scan_status}
