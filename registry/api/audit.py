"""The audit log over HTTP: entries, signed tree heads, inclusion and consistency proofs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from registry.api.refs import ArtifactFilter, checked_repo
from registry.api.responses import RegistryKey
from registry.audit import log as audit
from registry.auth.tokens import Context, CurrentPrincipal
from registry.core.errors import ApiError
from registry.core.tables import INT32_MAX

router = APIRouter(prefix="/v1", tags=["audit"])


@router.get("/registry/key", response_model=RegistryKey)
def registry_key(ctx: Context, principal: CurrentPrincipal) -> dict[str, Any]:
    """The registry's public key: pin it to check countersignatures, receipts and tree heads offline."""
    signer = ctx.signer
    return {"key_id": signer.key_id, "algorithm": "ecdsa-p256", "public_key": signer.public_pem,
            "log_id": ctx.settings.log_id}


@router.get("/audit/entries")
def list_entries(
    ctx: Context,
    principal: CurrentPrincipal,
    artifact: ArtifactFilter = None,
    action: str | None = Query(None, max_length=100),
    after: int = Query(-1, ge=-1, le=INT32_MAX, description="cursor: the last index of the previous page"),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Entries in log order. The whole log needs admin or read:*; one artifact's history needs read on it."""
    namespace = name = None
    if artifact is not None:
        if artifact.count("/") != 1:
            raise ApiError(400, "invalid_name", "artifact must be namespace/name")
        namespace, name = checked_repo(*artifact.split("/"))
        principal.require_read(namespace)
    elif not (principal.is_admin or "read:*" in principal.scopes or "write:*" in principal.scopes):
        raise ApiError(403, "forbidden", "reading the whole audit log needs an admin or read:* token")
    with ctx.transaction() as s:
        audit.settle(s)  # a change another process has committed is in the log before it is read
        rows = audit.list_entries(s, namespace=namespace, name=name, action=action, after=after, limit=limit)
        items = [audit.entry_to_dict(r) for r in rows]
        return {"items": items, "next": items[-1]["index"] if len(items) == limit else None,
                "tree_size": audit.tree_size(s)}


@router.get("/audit/tree-head")
def tree_head(ctx: Context, principal: CurrentPrincipal) -> dict[str, Any]:
    """The latest signed tree head (RFC 9162 root over every entry so far)."""
    signer = ctx.signer
    with ctx.transaction() as s:
        audit.settle(s)  # the head covers every change committed before this request
        return audit.current_tree_head(s, signer, ctx.settings.log_id).to_dict()


@router.get("/audit/proof/inclusion")
def inclusion(
    ctx: Context, principal: CurrentPrincipal, index: int = Query(ge=0, le=INT32_MAX),
    tree_size: int | None = Query(None, ge=1, le=INT32_MAX),
) -> dict[str, Any]:
    with ctx.transaction() as s:
        return audit.inclusion_proof(s, index, tree_size)


@router.get("/audit/proof/consistency")
def consistency(
    ctx: Context, principal: CurrentPrincipal, old_size: int = Query(ge=0, le=INT32_MAX),
    new_size: int = Query(ge=0, le=INT32_MAX),
) -> dict[str, Any]:
    with ctx.transaction() as s:
        return audit.consistency_proof(s, old_size, new_size)
