"""Lineage and quarantine over HTTP: walk, path, impact, export, add an edge, quarantine and lift.

Thin: checks scopes and names, then calls ``registry.lineage.edges``, ``registry.lineage.graph``,
``registry.lineage.quarantine`` and ``registry.lineage.exports``. Nodes in namespaces the caller may not read
appear as ``hidden:<id>`` with their attributes dropped, so a walk never stops at a wall but
never shows what is behind it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from sqlalchemy.orm import Session

from registry.api.refs import LineageCursor, Name, Namespace, VersionRef, checked_repo, checked_version
from registry.artifacts.models import Version
from registry.artifacts.versions import COMMITTED, find_exact_version, get_artifact, resolve_ref
from registry.auth.tokens import Context, CurrentPrincipal, Principal
from registry.core.errors import ApiError
from registry.core.names import InvalidNameError, parse_ref
from registry.core.schemas import QuarantineRequest
from registry.lineage import edges as lineage
from registry.lineage import exports, quarantine
from registry.lineage import graph as lineage_graph

router = APIRouter(prefix="/v1", tags=["lineage"])
_VERSION = "/artifacts/{namespace}/{name}/versions/{ref}"
_EDGE_EXAMPLE = {"type": "evaluated_on", "parent": {"ref": "acme/eval-set@2"}, "attributes": {"split": "test"}}


def _resolve(s: Session, principal: Principal, namespace: str, name: str, ref: str) -> Version:
    namespace, name = checked_repo(namespace, name)
    return resolve_ref(s, get_artifact(s, namespace, name), checked_version(ref))


def _exact(s: Session, namespace: str, name: str, version: str) -> Version:
    """A committed version by its exact name or commit id: edges and quarantines attach to versions, never to
    aliases."""
    art = get_artifact(s, namespace, name)
    row = find_exact_version(s, art, checked_version(version))
    if row is None or row.state != COMMITTED:
        hint = " (aliases move: name the exact version)" if row is None else ""
        raise ApiError(404, "version_not_found", f"{namespace}/{name}@{version} is not a committed version{hint}")
    return row


@router.get(_VERSION + "/lineage")
def walk_lineage(
    namespace: Namespace,
    name: Name,
    ref: VersionRef,
    ctx: Context,
    principal: CurrentPrincipal,
    direction: Literal["up", "down"] = Query("up", description="up: ancestors; down: descendants"),
    depth: int = Query(10, ge=1, le=lineage_graph.MAX_QUERY_DEPTH),
    limit: int = Query(500, ge=1, le=lineage_graph.MAX_PAGE),
    cursor: LineageCursor = None,
) -> dict[str, Any]:
    """Ancestors or descendants within ``depth`` hops: edges (type, attributes, origin, depth) and their nodes."""
    with ctx.transaction() as s:
        row = _resolve(s, principal, namespace, name, ref)
        return lineage_graph.graph_page(
            s, row, up=direction == "up", depth=depth, can_read=principal.can_read, limit=limit, cursor=cursor
        )


@router.post(_VERSION + "/lineage", status_code=201)
def add_lineage_edge(
    namespace: Namespace,
    name: Name,
    ref: VersionRef,
    ctx: Context,
    principal: CurrentPrincipal,
    body: Annotated[dict[str, Any], Body(examples=[_EDGE_EXAMPLE])],
) -> dict[str, Any]:
    """Add an edge to a committed version after the fact (write on its namespace, read on the parent's).

    Body: ``{"type", "parent": {"ref": "ns/name@version"} | {"external": {...}}, "attributes": {...}}``.
    The edge is append-only and audited; one that would close a cycle is refused.
    """
    namespace, name = checked_repo(namespace, name)
    declaration = lineage.parse_declaration(body, where="edge")
    with ctx.transaction() as s:
        child = _exact(s, namespace, name, ref)
        edge = lineage.add_edge(s, child, declaration, can_read=principal.can_read, actor=principal.name)
        return lineage_graph.describe_edge(s, edge, can_read=principal.can_read)


@router.get(_VERSION + "/lineage/path")
def lineage_path(
    namespace: Namespace,
    name: Name,
    ref: VersionRef,
    ctx: Context,
    principal: CurrentPrincipal,
    to: str = Query(..., max_length=400, description="the other version, ns/name@version-or-alias"),
    max_depth: int = Query(lineage_graph.MAX_QUERY_DEPTH, ge=1, le=lineage_graph.MAX_QUERY_DEPTH),
) -> dict[str, Any]:
    """A shortest chain of edges between two versions, in whichever direction one descends from the other."""
    try:
        other = parse_ref(to, require_ref=True)
    except InvalidNameError as exc:
        raise ApiError(400, "invalid_name", str(exc)) from exc
    principal.require_read(other.namespace)  # the path's own namespace is checked by the route rule
    with ctx.transaction() as s:
        start = _resolve(s, principal, namespace, name, ref)
        goal = _resolve(s, principal, other.namespace, other.name, other.ref or "")
        return lineage_graph.find_path(s, start, goal, can_read=principal.can_read, max_depth=max_depth)


@router.get(_VERSION + "/impact")
def lineage_impact(
    namespace: Namespace,
    name: Name,
    ref: VersionRef,
    ctx: Context,
    principal: CurrentPrincipal,
    limit: int = Query(500, ge=1, le=lineage_graph.MAX_PAGE),
    cursor: LineageCursor = None,
) -> dict[str, Any]:
    """Which committed versions descend from this one (all depths, paged) and which aliases point at them."""
    with ctx.transaction() as s:
        row = _resolve(s, principal, namespace, name, ref)
        return lineage_graph.impact(s, row, can_read=principal.can_read, limit=limit, cursor=cursor)


@router.get(_VERSION + "/lineage/export", response_model=None)
def export_lineage(
    namespace: Namespace,
    name: Name,
    ref: VersionRef,
    ctx: Context,
    principal: CurrentPrincipal,
    format: Literal["prov", "openlineage"] = Query("prov"),
    direction: Literal["up", "down"] = Query("up", description="ancestors (up) or descendants (down)"),
    depth: int = Query(lineage_graph.MAX_QUERY_DEPTH, ge=1, le=lineage_graph.MAX_QUERY_DEPTH),
) -> dict[str, Any] | list[dict[str, Any]]:
    """The ancestors or descendants as W3C PROV-JSON (a document) or OpenLineage (a list of RunEvents)."""
    with ctx.transaction() as s:
        row = _resolve(s, principal, namespace, name, ref)
        kwargs: dict[str, Any] = {
            "base_url": ctx.settings.base_url, "depth": depth, "can_read": principal.can_read,
            "up": direction == "up",
        }
        if format == "prov":
            return exports.to_prov(s, row, **kwargs)
        return exports.to_openlineage(s, row, **kwargs)


@router.get(_VERSION + "/quarantine")
def quarantine_state(
    namespace: Namespace, name: Name, ref: VersionRef, ctx: Context, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Whether this version is quarantined, affected by a quarantined ancestor, or clean (``status: null``)."""
    with ctx.transaction() as s:
        row = _resolve(s, principal, namespace, name, ref)
        status = quarantine.quarantine_status(s, row, can_read=principal.can_read)
        label = f"{namespace}/{name}@{row.version}"
        return {
            "version": label,
            "status": status["status"] if status else None,
            "sources": status["sources"] if status else [],
            "message": quarantine.describe_status(status, label) if status else f"{label} is not quarantined",
        }


@router.post(_VERSION + "/quarantine")
def quarantine_version(
    namespace: Namespace,
    name: Name,
    ref: VersionRef,
    body: QuarantineRequest,
    ctx: Context,
    principal: CurrentPrincipal,
) -> dict[str, Any]:
    """Quarantine a version (admin): it stops being downloadable and every descendant is marked affected."""
    namespace, name = checked_repo(namespace, name)
    with ctx.transaction() as s:
        row = _exact(s, namespace, name, ref)
        return quarantine.quarantine_version(s, row, reason=body.reason, actor=principal.name)


@router.post(_VERSION + "/quarantine/lift")
def lift_quarantine(
    namespace: Namespace,
    name: Name,
    ref: VersionRef,
    body: QuarantineRequest,
    ctx: Context,
    principal: CurrentPrincipal,
) -> dict[str, Any]:
    """Lift a version's quarantine (admin, with a reason); its descendants are no longer affected by it."""
    namespace, name = checked_repo(namespace, name)
    with ctx.transaction() as s:
        row = _exact(s, namespace, name, ref)
        return quarantine.lift_quarantine(s, row, reason=body.reason, actor=principal.name)


@router.get("/quarantines")
def list_quarantines(
    ctx: Context, principal: CurrentPrincipal, active: bool = Query(True, description="only those not lifted")
) -> list[dict[str, Any]]:
    """Quarantines (admin), oldest first."""
    with ctx.transaction() as s:
        return quarantine.list_quarantines(s, active_only=active)
