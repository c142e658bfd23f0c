"""Trusted keys per namespace and signatures on versions (added later, never removed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from registry.api.refs import KeyId, Name, Namespace, VersionRef, checked_repo, checked_version
from registry.artifacts.versions import get_artifact, resolve_ref, version_manifest
from registry.audit import log as audit
from registry.auth.tokens import Context, CurrentPrincipal
from registry.core.errors import ApiError
from registry.core.schemas import KeyRequest, KeyRevokeRequest, SignatureRequest
from registry.trust import signatures

router = APIRouter(prefix="/v1", tags=["signatures"])


@router.post("/namespaces/{namespace}/keys", status_code=201)
def add_key(namespace: Namespace, body: KeyRequest, ctx: Context, principal: CurrentPrincipal) -> dict[str, Any]:
    """Trust a public key to sign this namespace's artifacts (those matching ``artifacts``)."""
    namespace, _ = checked_repo(namespace, "x")
    with ctx.transaction() as s:
        row = signatures.register_key(s, namespace, body.public_key, label=body.label or "key",
                                      pattern=body.artifacts, actor=principal.name)
        return signatures.key_to_dict(row)


@router.get("/namespaces/{namespace}/keys")
def list_keys(namespace: Namespace, ctx: Context, principal: CurrentPrincipal) -> list[dict[str, Any]]:
    namespace, _ = checked_repo(namespace, "x")
    with ctx.transaction() as s:
        return [signatures.key_to_dict(k) for k in signatures.keys_of(s, namespace)]


@router.post("/namespaces/{namespace}/keys/{key_id}/revoke")
def revoke_key(
    namespace: Namespace, key_id: KeyId, body: KeyRevokeRequest, ctx: Context, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Revoke a key (with a reason); its signatures stop counting everywhere from now on."""
    namespace, _ = checked_repo(namespace, "x")
    with ctx.transaction() as s:
        return signatures.key_to_dict(
            signatures.revoke_key(s, namespace, key_id.lower(), reason=body.reason, actor=principal.name)
        )


@router.get("/artifacts/{namespace}/{name}/versions/{ref}/signatures")
def list_signatures(
    namespace: Namespace, name: Name, ref: VersionRef, ctx: Context, principal: CurrentPrincipal
) -> list[dict[str, Any]]:
    namespace, name = checked_repo(namespace, name)
    with ctx.transaction() as s:
        version = resolve_ref(s, get_artifact(s, namespace, name), checked_version(ref))
        return signatures.signatures_of(s, version)


@router.post("/artifacts/{namespace}/{name}/versions/{ref}/signatures", status_code=201)
def add_signature(
    namespace: Namespace, name: Name, ref: VersionRef, body: SignatureRequest, ctx: Context, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Add a signature to a committed version: it must be a trusted key's signature over exactly its manifest."""
    namespace, name = checked_repo(namespace, name)
    envelope = signatures.parse_envelope(body.envelope)
    with ctx.transaction() as s:
        version = resolve_ref(s, get_artifact(s, namespace, name), checked_version(ref))
        key_ids = signatures.check_pusher_signature(s, namespace, name, version_manifest(version), envelope)
        added = signatures.attach(s, version, envelope, key_ids, origin=signatures.PUSHER, actor=principal.name)
        if not added:
            raise ApiError(409, "signature_exists", f"key {', '.join(key_ids)} already signed this version")
        audit.record(s, action="signature.added", actor=principal.name, namespace=namespace, name=name,
                     version=version.version,
                     details={"key_ids": added, "manifest_digest": version.manifest_digest})
        return {"key_ids": added, "version": version.version}
