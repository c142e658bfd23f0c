"""Lineage edges: declared with a push, checked at commit, added later (audited), recorded by the registry.

The rules live here; ``registry/api/lineage.py`` only translates HTTP. An edge
points from a child version to exactly one parent: another registry version
(stored by version id: an alias is resolved when the edge is declared, so the
edge never moves) or a pinned external source. Edges are append-only: there is
no update and no delete. The queries over them live in ``lineage_graph``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.artifacts.models import Version
from registry.artifacts.versions import (
    COMMITTED,
    find_artifact,
    find_by_ref,
    record_version_event,
    version_label,
)
from registry.core.errors import ApiError
from registry.core.names import InvalidNameError, parse_ref
from registry.core.schemas import HuggingFaceSource, LineageDeclaration, LineageParent, UrlSource
from registry.lineage.graph import CanRead, NodeIndex, everyone, reaches
from registry.lineage.models import ExternalSource, LineageEdge
from signing.jcs import canonicalize

DECLARED = "declared"
RECORDED = "recorded"
_LOCK_KEY = 0x6D69726C  # "mirl": one PostgreSQL advisory lock serialises edges added after push
_E = LineageEdge.__table__


# -- declarations -------------------------------------------------------------------------------------------


def parse_declarations(raw: Sequence[Mapping[str, Any]], *, where: str = "lineage") -> list[LineageDeclaration]:
    """Validate raw JSON declarations, naming the first bad one: ``lineage[2].parent.ref: ...`` (400)."""
    parsed: list[LineageDeclaration] = []
    for index, item in enumerate(raw):
        parsed.append(parse_declaration(item, where=f"{where}[{index}]"))
    return parsed


def parse_declaration(item: Any, *, where: str = "lineage") -> LineageDeclaration:
    try:
        return LineageDeclaration.model_validate(item)
    except ValidationError as exc:
        problems = []
        for err in exc.errors()[:5]:
            loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.get("loc", ()))
            problems.append(f"{where}{loc}: {err.get('msg')}")
        raise ApiError(400, "invalid_lineage", "; ".join(problems) or f"{where}: invalid declaration") from exc


def external_identity(source: HuggingFaceSource | UrlSource) -> tuple[str, str, str]:
    """(kind, uri, revision): the one spelling under which an external source is stored and looked up."""
    if isinstance(source, HuggingFaceSource):
        prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[source.repo_type]
        return "huggingface", f"hf://{prefix}{source.repo}", source.revision
    return "url", source.url, source.digest


def get_or_create_external(session: Session, source: HuggingFaceSource | UrlSource) -> ExternalSource:
    kind, uri, revision = external_identity(source)
    query = select(ExternalSource).where(
        ExternalSource.kind == kind, ExternalSource.uri == uri, ExternalSource.revision == revision
    )
    row = session.scalar(query)
    if row is not None:
        return row
    row = ExternalSource(kind=kind, uri=uri, revision=revision)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raced = session.scalar(query)
        if raced is None:
            raise
        return raced
    return row


@dataclass(frozen=True)
class ResolvedParent:
    """A parent after resolution: a committed version or a (stored) external source."""

    version: Version | None = None
    external: ExternalSource | None = None

    @property
    def key(self) -> tuple[int | None, int | None]:
        return (self.version.id if self.version else None, self.external.id if self.external else None)


def resolve_parent(
    session: Session, parent: LineageParent, *, can_read: CanRead, where: str, child: Version | None = None
) -> ResolvedParent:
    """A parent reference made concrete: aliases become the version they point to now."""
    if parent.external is not None:
        return ResolvedParent(external=get_or_create_external(session, parent.external))
    assert parent.ref is not None
    try:
        ref = parse_ref(parent.ref, require_ref=True)
    except InvalidNameError as exc:
        raise ApiError(400, "invalid_lineage", f"{where}.parent.ref: {exc}") from exc
    if not can_read(ref.namespace):
        raise ApiError(
            403, "forbidden", f"{where}: this token may not read namespace {ref.namespace!r} of parent {ref}"
        )
    if child is not None and (child.artifact.namespace, child.artifact.name, child.version) == (
        ref.namespace,
        ref.name,
        ref.ref,
    ):
        raise ApiError(400, "lineage_self_edge", f"{where}: {ref} cannot be its own parent")
    artifact = find_artifact(session, ref.namespace, ref.name)
    version = None
    if artifact is not None:
        assert ref.ref is not None
        version = find_by_ref(session, artifact, ref.ref)
    if version is None:
        raise ApiError(404, "lineage_parent_not_found", f"{where}: parent {ref} not found")
    if child is not None and version.id == child.id:
        raise ApiError(400, "lineage_self_edge", f"{where}: {ref} cannot be its own parent")
    if version.state != COMMITTED:
        raise ApiError(
            409, "lineage_parent_not_committed", f"{where}: parent {ref} is still being uploaded; commit it first"
        )
    return ResolvedParent(version=version)


def _new_edge(
    child: Version,
    edge_type: str,
    parent: ResolvedParent,
    attributes: Mapping[str, Any],
    *,
    origin: str,
    at_push: bool,
    actor: str | None,
) -> LineageEdge:
    return LineageEdge(
        child_version_id=child.id,
        parent_version_id=parent.version.id if parent.version else None,
        parent_external_id=parent.external.id if parent.external else None,
        type=edge_type,
        attributes=dict(attributes),
        origin=origin,
        at_push=at_push,
        created_by=actor,
    )


def _fingerprint(edge_type: str, key: tuple[int | None, int | None], attributes: Mapping[str, Any]) -> bytes:
    return canonicalize({"type": edge_type, "parent": list(key), "attributes": dict(attributes)})


def declare_at_open(
    session: Session,
    version: Version,
    declarations: Sequence[LineageDeclaration],
    *,
    can_read: CanRead,
    actor: str,
    resumed: bool,
) -> list[LineageEdge]:
    """Store the lineage declared with a push (or, on resume, insist it is the same as the first time)."""
    resolved: list[tuple[LineageDeclaration, ResolvedParent]] = []
    seen: set[tuple[str, tuple[int | None, int | None]]] = set()
    for index, decl in enumerate(declarations):
        parent = resolve_parent(session, decl.parent, can_read=can_read, where=f"lineage[{index}]", child=version)
        if (decl.type, parent.key) in seen:
            raise ApiError(400, "invalid_lineage", f"lineage[{index}]: the same {decl.type} edge is declared twice")
        seen.add((decl.type, parent.key))
        resolved.append((decl, parent))
    if resumed:
        stored = session.scalars(
            select(LineageEdge).where(LineageEdge.child_version_id == version.id, LineageEdge.at_push.is_(True))
        ).all()
        before = sorted(_fingerprint(e.type, (e.parent_version_id, e.parent_external_id), e.attributes) for e in stored)
        after = sorted(_fingerprint(d.type, p.key, d.attributes) for d, p in resolved)
        if before != after:
            raise ApiError(
                409,
                "open_version_conflict",
                f"{version_label(version)} is already open with different lineage; abort it (DELETE) to start over",
            )
        return list(stored)
    edges = [
        _new_edge(version, d.type, p, d.attributes, origin=DECLARED, at_push=True, actor=actor) for d, p in resolved
    ]
    session.add_all(edges)
    session.flush()
    return edges


def check_at_commit(session: Session, version: Version, *, actor: str) -> None:
    """Commit-time checks: every registry parent is a committed version and no edge closes a cycle.

    Parents were committed when declared and committed versions cannot be deleted, so this is a
    defence in depth; it also appends the digest of the declared lineage to the audit log so the
    version's lineage is as tamper-evident as its manifest.
    """
    edges = session.scalars(
        select(LineageEdge).where(LineageEdge.child_version_id == version.id).order_by(LineageEdge.id)
    ).all()
    if not edges:
        return
    parent_ids = [e.parent_version_id for e in edges if e.parent_version_id is not None]
    if parent_ids:
        states = dict(session.execute(select(Version.id, Version.state).where(Version.id.in_(parent_ids))).all())
        for pid in parent_ids:
            if states.get(pid) != COMMITTED:
                raise ApiError(
                    409, "lineage_parent_not_committed",
                    f"a declared parent of {version_label(version)} is not committed",
                )
        if reaches(session, parent_ids, version.id, up=True):
            raise ApiError(
                409, "lineage_cycle", f"the lineage declared for {version_label(version)} would form a cycle"
            )
    nodes = NodeIndex.load(session, parent_ids, [e.parent_external_id for e in edges if e.parent_external_id])
    declared = [
        {
            "type": e.type,
            "parent": nodes.key_of(e.parent_version_id, e.parent_external_id),
            "attributes": e.attributes,
            "origin": e.origin,
        }
        for e in edges
    ]
    record_version_event(session, version, action="lineage.declared", actor=actor, details={
            "edge_count": len(declared),
            "lineage_digest": "sha256:" + hashlib.sha256(canonicalize(declared)).hexdigest(),
        })


def _lock_graph(session: Session) -> None:
    """Serialise cycle checks with inserts (SQLite transactions already hold the write lock)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})


def add_edge(
    session: Session,
    child: Version,
    declaration: LineageDeclaration,
    *,
    can_read: CanRead,
    actor: str,
    origin: str = DECLARED,
) -> LineageEdge:
    """Add an edge to a committed version after the fact: checked for cycles, appended, audited."""
    if child.state != COMMITTED:
        raise ApiError(
            409, "version_not_committed", f"{version_label(child)} is not committed; declare lineage with the push"
        )
    _lock_graph(session)
    parent = resolve_parent(session, declaration.parent, can_read=can_read, where="edge", child=child)
    if parent.version is not None and (
        parent.version.id == child.id or reaches(session, [parent.version.id], child.id, up=True)
    ):
        raise ApiError(
            409,
            "lineage_cycle",
            f"{version_label(parent.version)} descends from {version_label(child)}: the edge would form a cycle",
        )
    version_id, external_id = parent.key
    same_parent = (
        _E.c.parent_version_id == version_id if version_id is not None else _E.c.parent_external_id == external_id
    )
    exists = session.scalar(
        select(_E.c.id).where(_E.c.child_version_id == child.id, _E.c.type == declaration.type, same_parent)
    )
    if exists is not None:
        raise ApiError(409, "edge_exists", f"{version_label(child)} already has this {declaration.type} edge")
    edge = _new_edge(child, declaration.type, parent, declaration.attributes, origin=origin, at_push=False, actor=actor)
    session.add(edge)
    session.flush()
    nodes = NodeIndex.load(session, [version_id] if version_id is not None else [], [external_id])
    named = {"parent": nodes.key_of(edge.parent_version_id, edge.parent_external_id), "attributes": edge.attributes}
    elsewhere = parent.version is not None and parent.version.artifact.namespace != child.artifact.namespace
    # Whoever may read the child reads its audit history: a parent in another namespace is only digested (as
    # lineage.declared does), so its name and the edge's attributes reach only those who can check the digest.
    described = {"parent_elsewhere": True, "edge_digest": "sha256:" + hashlib.sha256(canonicalize(named)).hexdigest()} \
        if elsewhere else named
    record_version_event(session, child, action="lineage.edge_added", actor=actor, details={
            "edge_id": edge.id,
            "type": edge.type,
            **described,
            "origin": origin,
        })
    return edge


def record_edge(session: Session, child: Version, declaration: LineageDeclaration, *, actor: str) -> LineageEdge:
    """An edge the registry itself knows (an import, a conversion it ran): origin ``recorded``, audited."""
    return add_edge(session, child, declaration, can_read=everyone, actor=actor, origin=RECORDED)
