"""Quarantine: an admin marks a version bad; everything downstream is affected until it is lifted.

Stored once, on the quarantined version; "affected" is derived by walking up
from the version being read, so a descendant committed or linked after the
quarantine is affected too, and lifting it needs no clean-up. A quarantine
also covers every version of its namespace with the same manifest digest (the
same bytes pushed again under another name). Reads cost one indexed probe while
no quarantine is active (the usual case).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session, aliased

from registry.artifacts.models import Artifact, Version
from registry.artifacts.versions import COMMITTED, record_version_event, version_label
from registry.core.errors import ApiError
from registry.core.tables import utcnow
from registry.lineage.graph import MAX_PAGE, WALK_LIMIT, CanRead, NodeIndex, everyone, impact, reach, walk
from registry.lineage.models import Quarantine


def active_quarantine(session: Session, version: Version) -> Quarantine | None:
    return session.scalar(
        select(Quarantine).where(Quarantine.version_id == version.id, Quarantine.lifted_at.is_(None)).limit(1)
    )


def _quarantine_dict(q: Quarantine) -> dict[str, Any]:
    return {
        "id": q.id,
        "reason": q.reason,
        "by": q.created_by,
        "at": q.created_at.isoformat() if q.created_at else None,
        "lifted_at": q.lifted_at.isoformat() if q.lifted_at else None,
        "lifted_by": q.lifted_by,
        "lift_reason": q.lift_reason,
    }


def quarantine_status(session: Session, version: Version, *, can_read: CanRead = everyone) -> dict[str, Any] | None:
    """``None`` if clean; else ``quarantined`` (this version) or ``affected`` (an ancestor is), with why.

    A quarantine follows the content within its namespace: a version whose manifest digest equals that of a
    quarantined version of the same namespace is quarantined too (``same_content_as`` names the original), so
    re-pushing the bytes under another name does not escape it. Across namespaces it never reaches, so it
    reveals nothing about another tenant. One cheap probe first: with no active quarantine anywhere (the usual
    case) there is nothing to walk; otherwise one query over the ancestors.
    """
    if session.scalar(select(Quarantine.id).where(Quarantine.lifted_at.is_(None)).limit(1)) is None:
        return None
    walked = walk([version.id], up=True, depth=WALK_LIMIT)
    held, held_artifact = aliased(Version), aliased(Artifact)
    node, node_artifact = aliased(Version), aliased(Artifact)
    rows = session.execute(
        select(Quarantine, walked.c.depth, walked.c.node)
        .join(held, held.id == Quarantine.version_id)
        .join(held_artifact, held_artifact.id == held.artifact_id)
        .join(node, node.manifest_digest == held.manifest_digest)
        .join(node_artifact, and_(node_artifact.id == node.artifact_id,
                                  node_artifact.namespace == held_artifact.namespace))
        .join(walked, walked.c.node == node.id)
        .where(Quarantine.lifted_at.is_(None))
        .order_by(walked.c.depth, case((walked.c.node == Quarantine.version_id, 0), else_=1), Quarantine.id)
    ).all()
    if not rows:
        return None
    nearest: dict[int, tuple[Quarantine, int, int]] = {}
    for q, depth, via in rows:
        nearest.setdefault(q.id, (q, depth, via))
    nodes = NodeIndex.load(session, [i for q, _, via in nearest.values() for i in (q.version_id, via)], [])
    sources: list[dict[str, Any]] = []
    for q, depth, via in nearest.values():
        key = nodes.version_key(via, can_read)
        if key.startswith("hidden:"):
            sources.append({"version": None, "hidden": True, "depth": depth})
            continue
        source: dict[str, Any] = {"version": key, "depth": depth}
        if via != q.version_id:
            source["same_content_as"] = nodes.version_key(q.version_id, can_read)
        sources.append({**source, **_quarantine_dict(q)})
    status = "quarantined" if any(depth == 0 for _, depth, _ in nearest.values()) else "affected"
    return {"status": status, "sources": sources}


def describe_status(status: dict[str, Any], label: str) -> str:
    """One human line: why this version is quarantined or affected."""
    first = status["sources"][0]
    if status["status"] == "quarantined":
        same = (f"it has the same content as quarantined {first['same_content_as']}: "
                if first.get("same_content_as") else "")
        return f"{label} is quarantined: {same}{first.get('reason')} (by {first.get('by')} at {first.get('at')})"
    named = [s for s in status["sources"] if not s.get("hidden")]
    if not named:
        return f"{label} descends from a quarantined version you cannot read"
    same = f", which has the same content as {named[0]['same_content_as']}" if named[0].get("same_content_as") else ""
    return (f"{label} is affected: it descends from quarantined {named[0]['version']}{same} "
            f"({named[0].get('reason')})") + (
        f" and {len(status['sources']) - 1} more" if len(status["sources"]) > 1 else ""
    )


def quarantine_version(session: Session, version: Version, *, reason: str, actor: str) -> dict[str, Any]:
    """Quarantine a committed version; its descendants become affected at once. Admin-only (the router checks)."""
    if version.state != COMMITTED:
        raise ApiError(409, "version_not_committed", f"{version_label(version)} is not committed")
    session.execute(select(Version.id).where(Version.id == version.id).with_for_update())
    existing = active_quarantine(session, version)
    if existing is not None:
        raise ApiError(
            409, "already_quarantined", f"{version_label(version)} is already quarantined: {existing.reason}"
        )
    row = Quarantine(version_id=version.id, reason=reason, created_by=actor)
    session.add(row)
    session.flush()
    summary = impact(session, version, can_read=everyone, limit=100)
    # Whoever may read this artifact reads its audit history: name only this namespace, count the rest.
    own = f"{version.artifact.namespace}/"
    aliases = [a["alias"] for a in summary["aliases"] if a["alias"] and a["alias"].startswith(own)]
    record_version_event(session, version, action="version.quarantined", actor=actor, details={
            "quarantine_id": row.id,
            "reason": reason,
            "manifest_digest": version.manifest_digest,
            "same_content_versions": _same_content(session, version),
            "affected_versions": summary["total_versions"],
            "affected_versions_elsewhere": _descendants_elsewhere(session, version),
            "affected_aliases": aliases[:100],
            "affected_aliases_elsewhere": len(summary["aliases"]) - len(aliases),
        })
    return {"version": version_label(version), "quarantine": _quarantine_dict(row), "impact": summary}


def _same_content(session: Session, version: Version) -> list[str]:
    """Other versions of the namespace with the same manifest digest: the quarantine covers them too."""
    rows = session.execute(
        select(Artifact.name, Version.version)
        .join(Artifact, Artifact.id == Version.artifact_id)
        .where(Version.manifest_digest == version.manifest_digest, Version.id != version.id,
               Artifact.namespace == version.artifact.namespace, Version.state == COMMITTED)
        .order_by(Version.id)
        .limit(100)
    )
    return [f"{version.artifact.namespace}/{name}@{ref}" for name, ref in rows]


def _descendants_elsewhere(session: Session, version: Version) -> int:
    """How many committed descendants live in other namespaces (counted, never named, in the audit entry)."""
    reached = reach(walk([version.id], up=False, depth=WALK_LIMIT))
    return session.scalar(
        select(func.count())
        .select_from(reached)
        .join(Version, Version.id == reached.c.node)
        .join(Artifact, Artifact.id == Version.artifact_id)
        .where(reached.c.depth > 0, Version.state == COMMITTED, Artifact.namespace != version.artifact.namespace)
    ) or 0


def lift_quarantine(session: Session, version: Version, *, reason: str, actor: str) -> dict[str, Any]:
    session.execute(select(Version.id).where(Version.id == version.id).with_for_update())
    row = active_quarantine(session, version)
    if row is None:
        raise ApiError(409, "not_quarantined", f"{version_label(version)} is not quarantined")
    row.lifted_at = utcnow()
    row.lifted_by = actor
    row.lift_reason = reason
    session.flush()
    record_version_event(session, version, action="version.unquarantined", actor=actor,
        details={"quarantine_id": row.id, "reason": reason, "manifest_digest": version.manifest_digest})
    return {"version": version_label(version), "quarantine": _quarantine_dict(row)}


def list_quarantines(session: Session, *, active_only: bool = True) -> list[dict[str, Any]]:
    query = select(Quarantine).order_by(Quarantine.id)
    if active_only:
        query = query.where(Quarantine.lifted_at.is_(None))
    rows = session.scalars(query.limit(MAX_PAGE)).all()
    nodes = NodeIndex.load(session, [q.version_id for q in rows], [])
    return [{"version": nodes.version_key(q.version_id), **_quarantine_dict(q)} for q in rows]


def download_gate(
    session: Session,
    version: Version,
    *,
    is_admin: bool,
    actor: str,
    override: bool,
    path: str | None = None,
    can_read: CanRead = everyone,
) -> dict[str, Any] | None:
    """Before serving a file: refuse a quarantined version unless an admin overrides (audited).

    Returns the status (``None`` when clean) so the caller can tell the client an affected version is affected.
    """
    status = quarantine_status(session, version, can_read=can_read)
    if status is None or status["status"] != "quarantined":
        return status
    label = version_label(version)
    if not override:
        raise ApiError(
            403,
            "version_quarantined",
            f"{describe_status(status, label)}; download refused (an admin may override with "
            "override_quarantine=true, which is audited)",
            quarantine=status,
        )
    if not is_admin:
        raise ApiError(403, "forbidden", f"only an admin token may download quarantined {label}")
    record_version_event(session, version, action="version.quarantine_override", actor=actor, details={
            "path": path,
            "manifest_digest": version.manifest_digest,
            "quarantine_id": status["sources"][0].get("id"),
        })
    return status


def marks(session: Session, refs: Collection[str]) -> dict[str, str]:
    """``quarantined`` or ``affected`` for each of ``refs`` (``ns/name@version``) that is; the others are left out.

    What a graph of many versions needs at once, with the rules of :func:`quarantine_status`: a quarantine covers
    its version and the same content within the namespace, and everything that descends from those. Two queries
    whatever the number of versions; one probe while no quarantine is active.
    """
    if not refs or session.scalar(select(Quarantine.id).where(Quarantine.lifted_at.is_(None)).limit(1)) is None:
        return {}
    held, held_artifact = aliased(Version), aliased(Artifact)
    covered = set(session.scalars(
        select(Version.id)
        .join(Artifact, Artifact.id == Version.artifact_id)
        .join(held, held.manifest_digest == Version.manifest_digest)
        .join(held_artifact, and_(held_artifact.id == held.artifact_id, held_artifact.namespace == Artifact.namespace))
        .join(Quarantine, Quarantine.version_id == held.id)
        .where(Quarantine.lifted_at.is_(None))
    ))
    if not covered:
        return {}
    below = reach(walk(sorted(covered), up=False, depth=WALK_LIMIT))
    label = Artifact.namespace + "/" + Artifact.name + "@" + Version.version
    wanted = sorted(set(refs))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), MAX_PAGE):
        rows = session.execute(
            select(Version.id, label)
            .join(Artifact, Artifact.id == Version.artifact_id)
            .join(below, below.c.node == Version.id)
            .where(label.in_(wanted[start : start + MAX_PAGE]))
        )
        for version_id, ref in rows:
            found[ref] = "quarantined" if version_id in covered else "affected"
    return found
