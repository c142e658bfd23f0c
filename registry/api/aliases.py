"""Aliases: movable pointers (``@prod``, ``@latest``); every move is recorded.

A target may be named by version name or commit id. An alias made as a tag (HF ``create_tag``) answers 409
``alias_immutable`` to a move or a delete (the rule lives in :func:`registry.artifacts.versions.move_alias`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from registry.api.refs import AliasName, Name, Namespace, checked_alias, checked_repo, checked_version
from registry.api.responses import AliasMoved
from registry.artifacts import listing
from registry.artifacts.versions import (
    COMMITTED,
    aliases_of,
    find_alias,
    find_exact_version,
    get_artifact,
    move_alias,
)
from registry.auth.tokens import Context, CurrentPrincipal
from registry.core.errors import ApiError
from registry.core.schemas import AliasRequest
from registry.lineage.aliases import point_alias

router = APIRouter(prefix="/v1/artifacts", tags=["aliases"])


@router.get("/{namespace}/{name}/aliases")
def list_aliases(namespace: Namespace, name: Name, ctx: Context, principal: CurrentPrincipal) -> dict[str, str]:
    namespace, name = checked_repo(namespace, name)
    with ctx.transaction() as s:
        return aliases_of(s, get_artifact(s, namespace, name))


@router.put("/{namespace}/{name}/aliases/{alias}", response_model=AliasMoved)
def set_alias(
    namespace: Namespace, name: Name, alias: AliasName, body: AliasRequest, ctx: Context, principal: CurrentPrincipal
) -> dict[str, Any]:
    namespace, name = checked_repo(namespace, name)
    alias = checked_alias(alias)
    with ctx.transaction() as s:
        art = get_artifact(s, namespace, name)
        target = find_exact_version(s, art, checked_version(body.version))
        if target is None or target.state != COMMITTED:
            raise ApiError(404, "version_not_found", f"{namespace}/{name}@{body.version} is not a committed version")
        event = point_alias(s, art, alias, target, principal=principal, reason=body.reason,
                            override_quarantine=body.override_quarantine)
        return {"alias": alias, "version": target.version, "moved": event is not None}


@router.delete("/{namespace}/{name}/aliases/{alias}", status_code=204)
def delete_alias(namespace: Namespace, name: Name, alias: AliasName, ctx: Context, principal: CurrentPrincipal) -> None:
    namespace, name = checked_repo(namespace, name)
    alias = checked_alias(alias)
    with ctx.transaction() as s:
        art = get_artifact(s, namespace, name)
        if find_alias(s, art, alias) is None:
            raise ApiError(404, "alias_not_found", f"{namespace}/{name}@{alias} is not an alias")
        move_alias(s, art, alias, None, actor=principal.name, reason="deleted")


@router.get("/{namespace}/{name}/aliases/{alias}/history")
def alias_history(
    namespace: Namespace, name: Name, alias: AliasName, ctx: Context, principal: CurrentPrincipal
) -> list[dict[str, Any]]:
    namespace, name = checked_repo(namespace, name)
    alias = checked_alias(alias)
    with ctx.transaction() as s:
        return listing.alias_history(s, get_artifact(s, namespace, name), alias)
