"""Read-side queries over artifacts shared by the API and the web interface: the filtered listing, one
artifact's versions and aliases, and an alias's move history.

The caller's view arrives as ``readable`` (the namespaces it may read, ``None`` for all) and ``can_read``;
the namespace filter is in SQL, so a page never reads rows only to hide them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, aliased

from registry.artifacts.models import AliasEvent, Artifact, Version
from registry.artifacts.versions import aliases_of, version_to_dict

# Rows read per query while filling a page of artifacts (the namespace filter is in SQL; this bounds each read).
_LIST_BATCH_MAX = 1000


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filtered(
    readable: frozenset[str] | None, namespace: str | None, kind: str | None, search: str | None
) -> Select[Artifact]:
    query = select(Artifact).order_by(Artifact.id)
    if namespace:
        query = query.where(Artifact.namespace == namespace)
    if readable is not None:
        query = query.where(Artifact.namespace.in_(sorted(readable)))
    if kind:
        query = query.where(Artifact.kind == kind)
    if search:
        pattern = f"%{_like_escaped(search.lower())}%"
        query = query.where(
            (Artifact.namespace + "/" + Artifact.name).ilike(pattern, escape="\\")
        )
    return query


def list_artifacts(
    session: Session,
    *,
    readable: frozenset[str] | None,
    can_read: Callable[[str], bool],
    namespace: str | None = None,
    kind: str | None = None,
    search: str | None = None,
    limit: int = 100,
    after: int = 0,
) -> tuple[list[dict[str, Any]], int | None]:
    """Artifacts the caller may read, by id, and the cursor of the next page (``None`` on the last one).

    A page holds ``limit`` of them unless the listing ends; the cursor is the id of the page's last item, so it
    never names an artifact the caller cannot read. ``search`` matches ``namespace/name`` case-insensitively.
    """
    query = _filtered(readable, namespace, kind, search)
    items: list[dict[str, Any]] = []
    scanned, last_item = after, after
    batch = min(limit * 4, _LIST_BATCH_MAX)
    while len(items) < limit:
        rows = session.scalars(query.where(Artifact.id > scanned).limit(batch)).all()
        for art in rows:
            scanned = art.id
            if not can_read(art.namespace):
                continue
            items.append(
                {"artifact": f"{art.namespace}/{art.name}", "kind": art.kind, "aliases": aliases_of(session, art)}
            )
            last_item = art.id
            if len(items) == limit:
                break
        if len(rows) < batch:
            break
    return items, (last_item if len(items) == limit else None)


def namespaces(session: Session, *, readable: frozenset[str] | None) -> list[str]:
    """The namespaces holding at least one artifact the caller may read, sorted."""
    query = select(Artifact.namespace).distinct().order_by(Artifact.namespace)
    if readable is not None:
        query = query.where(Artifact.namespace.in_(sorted(readable)))
    return list(session.scalars(query))


def artifact_overview(session: Session, art: Artifact) -> dict[str, Any]:
    """One artifact: kind, aliases and every version (without files), oldest first."""
    aliases = aliases_of(session, art)
    by_version: dict[str, list[str]] = {}
    for alias, ver in aliases.items():
        by_version.setdefault(ver, []).append(alias)
    versions = session.scalars(select(Version).where(Version.artifact_id == art.id).order_by(Version.id))
    return {
        "artifact": f"{art.namespace}/{art.name}",
        "kind": art.kind,
        "created_at": art.created_at.isoformat(),
        "aliases": aliases,
        "versions": [version_to_dict(v, with_files=False, aliases=by_version.get(v.version, ())) for v in versions],
    }


def alias_history(session: Session, art: Artifact, alias: str) -> list[dict[str, Any]]:
    """Every move of one alias, oldest first: when, who, from which version to which, and why."""
    before, after = aliased(Version), aliased(Version)
    rows = session.execute(
        select(AliasEvent, before.version, after.version)
        .outerjoin(before, before.id == AliasEvent.from_version_id)
        .outerjoin(after, after.id == AliasEvent.to_version_id)
        .where(AliasEvent.artifact_id == art.id, AliasEvent.alias == alias)
        .order_by(AliasEvent.id)
    )
    return [
        {"at": ev.at.isoformat(), "actor": ev.actor, "from": old, "to": new, "reason": ev.reason}
        for ev, old, new in rows
    ]
