"""Walks over the lineage graph: ancestors, descendants, paths, impact, and the nodes they mention.

Every walk is one recursive CTE (``WITH RECURSIVE``, the same SQL on SQLite
and PostgreSQL) over ``lineage_edges`` with a depth bound; it rides the unique
index led by ``child_version_id`` going up and ``ix_lineage_edges_parent``
going down. ``UNION`` (not ``UNION ALL``) keeps one row per (node, depth), so
diamonds cost rows per distinct depth, never per path. Results are paged by
keyset on (depth, id) and carry each edge's attributes, so callers (policy,
synthetic-fraction propagation) can compute over them without more queries.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import CTE, Select, and_, case, func, literal_column, or_, select
from sqlalchemy.orm import Session

from registry.artifacts.models import Alias, Artifact, Version
from registry.artifacts.versions import COMMITTED
from registry.core.errors import ApiError
from registry.core.tables import INT32_MAX
from registry.lineage.models import ExternalSource, LineageEdge

MAX_QUERY_DEPTH = 100
WALK_LIMIT = 1000  # depth bound of the complete walks (impact, quarantine, cycles); deeper graphs are refused
MAX_PAGE = 1000
MAX_ALIASES = 1000
_IN_CHUNK = 500
CURSOR_PATTERN = r"^([0-9]{1,4})\.([0-9]{1,10})$"  # <depth>.<id>, as pages hand it out
_CURSOR = re.compile(CURSOR_PATTERN)

CanRead = Callable[[str], bool]
_E = LineageEdge.__table__


def everyone(_namespace: str) -> bool:
    """A ``CanRead`` for the registry's own use (audit details, checks): nothing is hidden."""
    return True


# -- walks --------------------------------------------------------------------------------------------------


def walk(start: Iterable[int] | Select[Any], *, up: bool, depth: int) -> CTE:
    """(node, depth) for every version reachable from ``start`` within ``depth`` hops, starts at depth 0."""
    near, far = (
        (_E.c.child_version_id, _E.c.parent_version_id) if up else (_E.c.parent_version_id, _E.c.child_version_id)
    )
    seed = (
        select(Version.id.label("node"), literal_column("0").label("depth"))
        .where(Version.id.in_(start if isinstance(start, Select) else list(start)))
        .cte("walk", recursive=True)
    )
    step = select(far.label("node"), (seed.c.depth + 1).label("depth")).where(near == seed.c.node, seed.c.depth < depth)
    if up:
        step = step.where(far.is_not(None))
    return seed.union(step)


def reach(walked: CTE) -> CTE:
    """The nearest depth of each node a walk reached (BFS distance)."""
    return select(walked.c.node, func.min(walked.c.depth).label("depth")).group_by(walked.c.node).cte("reach")


def reaches(session: Session, starts: Sequence[int], target: int, *, up: bool) -> bool:
    """Whether ``target`` is reachable from ``starts``; refuses (fail closed) graphs deeper than WALK_LIMIT."""
    walked = walk(starts, up=up, depth=WALK_LIMIT)
    hits, deepest = session.execute(
        select(func.sum(case((walked.c.node == target, 1), else_=0)), func.max(walked.c.depth))
    ).one()
    if hits:
        return True
    if deepest is not None and deepest >= WALK_LIMIT:
        raise ApiError(409, "lineage_too_deep", f"lineage deeper than {WALK_LIMIT} levels cannot be checked")
    return False


def parse_cursor(cursor: str | None) -> tuple[int, int] | None:
    if cursor is None or cursor == "":
        return None
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        raise ApiError(400, "invalid_cursor", f"cursor {cursor[:40]!r} is not one this API handed out")
    # Past the largest id a row can have, a page is empty; the bound keeps the query within the column's range.
    return int(match.group(1)), min(int(match.group(2)), INT32_MAX)


@dataclass(frozen=True)
class EdgeRow:
    """One edge as a walk returns it: the stored columns plus its hop count from the start."""

    id: int
    child_version_id: int
    parent_version_id: int | None
    parent_external_id: int | None
    type: str
    attributes: dict[str, Any]
    origin: str
    at_push: bool
    created_at: datetime | None
    created_by: str | None
    depth: int


def walk_edges(
    session: Session,
    start_id: int,
    *,
    up: bool,
    depth: int,
    after: tuple[int, int] | None = None,
    limit: int | None = None,
) -> list[EdgeRow]:
    """Edges within ``depth`` hops of a version, nearest first, ordered by (depth, edge id) for keyset paging.

    Going up, an edge's depth is the hop count of its parent end; going down, of its child end. Going
    down only committed children count (open uploads are not versions yet).
    """
    reached = reach(walk([start_id], up=up, depth=depth))
    anchor = _E.c.child_version_id if up else _E.c.parent_version_id
    edge_depth = reached.c.depth + 1
    query = (
        select(_E, edge_depth.label("edge_depth"))
        .join(reached, anchor == reached.c.node)
        .where(reached.c.depth < depth)
    )
    if not up:
        query = query.join(Version, Version.id == _E.c.child_version_id).where(Version.state == COMMITTED)
    if after is not None:
        query = query.where(or_(edge_depth > after[0], and_(edge_depth == after[0], _E.c.id > after[1])))
    query = query.order_by(edge_depth, _E.c.id)
    if limit is not None:
        query = query.limit(limit)
    return [
        EdgeRow(
            id=r.id,
            child_version_id=r.child_version_id,
            parent_version_id=r.parent_version_id,
            parent_external_id=r.parent_external_id,
            type=r.type,
            attributes=r.attributes or {},
            origin=r.origin,
            at_push=bool(r.at_push),
            created_at=r.created_at,
            created_by=r.created_by,
            depth=int(r.edge_depth),
        )
        for r in session.connection().execute(query)  # Core rows: the ORM layer costs more than the walk
    ]


# -- nodes --------------------------------------------------------------------------------------------------


@dataclass
class NodeIndex:
    """Descriptions of the versions and external sources that a set of edges mentions, loaded in bulk."""

    versions: dict[int, dict[str, Any]] = field(default_factory=dict)
    externals: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, session: Session, version_ids: Iterable[int | None], external_ids: Iterable[int | None]) -> NodeIndex:
        index = cls()
        vids = sorted({v for v in version_ids if v is not None})
        for start in range(0, len(vids), _IN_CHUNK):
            rows = session.execute(
                select(
                    Version.id,
                    Artifact.namespace,
                    Artifact.name,
                    Artifact.kind,
                    Version.version,
                    Version.state,
                    Version.manifest_digest,
                    Version.created_by,
                    Version.committed_at,
                )
                .join(Artifact, Artifact.id == Version.artifact_id)
                .where(Version.id.in_(vids[start : start + _IN_CHUNK]))
            )
            for r in rows:
                index.versions[r.id] = {
                    "type": "version",
                    "ref": f"{r.namespace}/{r.name}@{r.version}",
                    "namespace": r.namespace,
                    "artifact": f"{r.namespace}/{r.name}",
                    "version": r.version,
                    "kind": r.kind,
                    "state": r.state,
                    "manifest_digest": r.manifest_digest,
                    "created_by": r.created_by,
                    "committed_at": r.committed_at.isoformat() if r.committed_at else None,
                }
        eids = sorted({e for e in external_ids if e is not None})
        for start in range(0, len(eids), _IN_CHUNK):
            for ext in session.scalars(
                select(ExternalSource).where(ExternalSource.id.in_(eids[start : start + _IN_CHUNK]))
            ):
                index.externals[ext.id] = external_to_dict(ext)
        return index

    def version_key(self, version_id: int, can_read: CanRead = everyone) -> str:
        node = self.versions.get(version_id)
        if node is None or not can_read(node["namespace"]):
            return f"hidden:{version_id}"
        return str(node["ref"])

    def key_of(self, version_id: int | None, external_id: int | None, can_read: CanRead = everyone) -> str:
        if version_id is not None:
            return self.version_key(version_id, can_read)
        assert external_id is not None
        return str(self.externals[external_id]["key"])

    def source_hidden(self, row: EdgeRow | LineageEdge, can_read: CanRead) -> bool:
        """Whether an edge's external parent is hidden: it is when the version that names it is. What a version
        the caller may not read came from (a private dataset URL, a Hub repo) is its namespace's lineage."""
        return row.parent_version_id is None and self.version_key(row.child_version_id, can_read).startswith("hidden:")

    def parent_key(self, row: EdgeRow | LineageEdge, can_read: CanRead = everyone) -> str:
        """The key of an edge's parent in the caller's view; a hidden external source is one hidden node per edge,
        so two hidden versions never show that they share a source."""
        if self.source_hidden(row, can_read):
            return f"hidden:source-{row.id}"
        return self.key_of(row.parent_version_id, row.parent_external_id, can_read)

    def parent_node(self, row: EdgeRow | LineageEdge, can_read: CanRead) -> dict[str, Any]:
        if self.source_hidden(row, can_read):
            return {"type": "hidden"}
        return self.describe((row.parent_version_id, row.parent_external_id), can_read)

    def describe(self, key_owner: tuple[int | None, int | None], can_read: CanRead) -> dict[str, Any]:
        version_id, external_id = key_owner
        if version_id is not None:
            node = self.versions.get(version_id)
            if node is None or not can_read(node["namespace"]):
                return {"type": "hidden"}
            return node
        assert external_id is not None
        return self.externals[external_id]


def external_to_dict(ext: ExternalSource) -> dict[str, Any]:
    if ext.kind == "huggingface":
        path = ext.uri.removeprefix("hf://")
        repo_type = "model"
        for prefix, kind in (("datasets/", "dataset"), ("spaces/", "space")):
            if path.startswith(prefix):
                path, repo_type = path.removeprefix(prefix), kind
        web = "https://huggingface.co/" + ("" if repo_type == "model" else f"{repo_type}s/") + path
        return {
            "type": "external",
            "kind": "huggingface",
            "key": f"{ext.uri}@{ext.revision}",
            "repo": path,
            "repo_type": repo_type,
            "revision": ext.revision,
            "url": f"{web}/tree/{ext.revision}",
        }
    return {
        "type": "external",
        "kind": ext.kind,
        "key": f"{ext.uri}#{ext.revision}",
        "url": ext.uri,
        "digest": ext.revision,
    }


def edge_to_dict(
    row: EdgeRow | LineageEdge, nodes: NodeIndex, can_read: CanRead, depth: int | None = None
) -> dict[str, Any]:
    child_key = nodes.version_key(row.child_version_id, can_read)
    parent_key = nodes.parent_key(row, can_read)
    hidden = child_key.startswith("hidden:") or parent_key.startswith("hidden:")
    data: dict[str, Any] = {
        "id": row.id,
        "type": row.type,
        "child": child_key,
        "parent": parent_key,
        "attributes": {} if hidden else dict(row.attributes or {}),
        "origin": row.origin,
        "at_push": bool(row.at_push),
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "created_by": None if hidden else row.created_by,
    }
    row_depth = depth if depth is not None else getattr(row, "depth", None)
    if row_depth is not None:
        data["depth"] = row_depth
    return data


def graph_page(
    session: Session,
    version: Version,
    *,
    up: bool,
    depth: int,
    can_read: CanRead,
    limit: int = MAX_PAGE,
    cursor: str | None = None,
) -> dict[str, Any]:
    """One page of ancestors (``up``) or descendants: edges with attributes, and the nodes they mention."""
    depth = max(1, min(depth, MAX_QUERY_DEPTH))
    limit = max(1, min(limit, MAX_PAGE))
    rows = walk_edges(session, version.id, up=up, depth=depth, after=parse_cursor(cursor), limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    nodes = NodeIndex.load(
        session,
        [version.id, *(r.child_version_id for r in rows), *(r.parent_version_id for r in rows if r.parent_version_id)],
        [r.parent_external_id for r in rows],
    )
    edges = [edge_to_dict(r, nodes, can_read) for r in rows]
    described: dict[str, dict[str, Any]] = {}
    for r in rows:
        described.setdefault(nodes.version_key(r.child_version_id, can_read),
                             nodes.describe((r.child_version_id, None), can_read))
        described.setdefault(nodes.parent_key(r, can_read), nodes.parent_node(r, can_read))
    root = nodes.version_key(version.id)
    described.setdefault(root, nodes.describe((version.id, None), everyone))
    return {
        "root": root,
        "direction": "up" if up else "down",
        "depth": depth,
        "edges": edges,
        "nodes": described,
        "next": f"{rows[-1].depth}.{rows[-1].id}" if more and rows else None,
    }


def describe_edge(session: Session, edge: LineageEdge, *, can_read: CanRead) -> dict[str, Any]:
    nodes = NodeIndex.load(session, [edge.child_version_id, edge.parent_version_id or 0], [edge.parent_external_id])
    return edge_to_dict(edge, nodes, can_read)


def parents_of(session: Session, version: Version, *, can_read: CanRead) -> list[dict[str, Any]]:
    """The version's direct parents (what ``show`` prints); a version has few, so no paging."""
    edges = session.scalars(
        select(LineageEdge).where(LineageEdge.child_version_id == version.id).order_by(LineageEdge.id)
    ).all()
    nodes = NodeIndex.load(
        session,
        [version.id, *(e.parent_version_id for e in edges if e.parent_version_id)],
        [e.parent_external_id for e in edges],
    )
    return [edge_to_dict(e, nodes, can_read) for e in edges]


def find_path(
    session: Session, start: Version, goal: Version, *, can_read: CanRead, max_depth: int = MAX_QUERY_DEPTH
) -> dict[str, Any]:
    """A shortest chain of edges between two versions, whichever is the ancestor; ``path`` is None if none.

    One walk labels every reachable node with its hop count; the chain is then read back from the goal,
    one indexed lookup per hop, choosing at each step an edge whose other end is one hop nearer.
    """
    max_depth = max(1, min(max_depth, MAX_QUERY_DEPTH))
    for up in (True, False):
        reached = reach(walk([start.id], up=up, depth=max_depth))
        dist: dict[int, int] = {node: depth for node, depth in session.execute(select(reached.c.node, reached.c.depth))}
        if goal.id not in dist or goal.id == start.id:
            continue
        chain: list[LineageEdge] = []
        current, hops = goal.id, dist[goal.id]
        while hops > 0:
            near = LineageEdge.parent_version_id if up else LineageEdge.child_version_id
            other = LineageEdge.child_version_id if up else LineageEdge.parent_version_id
            step = None
            for edge in session.scalars(select(LineageEdge).where(near == current).order_by(LineageEdge.id)):
                if dist.get(getattr(edge, other.key)) == hops - 1:
                    step = edge
                    break
            assert step is not None, "a BFS label always has a predecessor one hop nearer"
            chain.append(step)
            current, hops = getattr(step, other.key), hops - 1
        chain.reverse()
        ids = [start.id, goal.id, *(e.child_version_id for e in chain), *(e.parent_version_id for e in chain)]
        nodes = NodeIndex.load(session, [i for i in ids if i is not None], [])
        return {
            "from": nodes.version_key(start.id),
            "to": nodes.version_key(goal.id),
            "direction": "up" if up else "down",
            "path": [edge_to_dict(e, nodes, can_read, depth=i + 1) for i, e in enumerate(chain)],
        }
    nodes = NodeIndex.load(session, [start.id, goal.id], [])
    return {"from": nodes.version_key(start.id), "to": nodes.version_key(goal.id), "direction": None, "path": None}


# -- impact -------------------------------------------------------------------------------------------------


def impact(
    session: Session,
    version: Version,
    *,
    can_read: CanRead,
    limit: int = MAX_PAGE,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Every committed version that descends from ``version`` (paged, nearest first) and every alias on them.

    Aliases include the ones on ``version`` itself (depth 0): "is @prod built on this?" starts there.
    """
    limit = max(1, min(limit, MAX_PAGE))
    after = parse_cursor(cursor)
    walked = walk([version.id], up=False, depth=WALK_LIMIT)
    reached = reach(walked)
    committed = (
        select(reached.c.node, reached.c.depth)
        .join(Version, Version.id == reached.c.node)
        .where(Version.state == COMMITTED)
        .cte("committed_reach")
    )
    total = session.scalar(select(func.count()).select_from(committed).where(committed.c.depth > 0)) or 0
    page_query = select(committed.c.node, committed.c.depth).where(committed.c.depth > 0)
    if after is not None:
        page_query = page_query.where(
            or_(committed.c.depth > after[0], and_(committed.c.depth == after[0], committed.c.node > after[1]))
        )
    page = session.execute(page_query.order_by(committed.c.depth, committed.c.node).limit(limit + 1)).all()
    more = len(page) > limit
    page = page[:limit]
    alias_rows = session.execute(
        select(Alias.name, Alias.version_id, committed.c.depth)
        .join(committed, committed.c.node == Alias.version_id)
        .order_by(committed.c.depth, Alias.version_id, Alias.name)
        .limit(MAX_ALIASES + 1)
    ).all()
    deepest = session.scalar(select(func.max(walked.c.depth))) or 0
    nodes = NodeIndex.load(session, [version.id, *(n for n, _ in page), *(r.version_id for r in alias_rows)], [])
    aliases_by_version: dict[int, list[str]] = {}
    for r in alias_rows[:MAX_ALIASES]:
        aliases_by_version.setdefault(r.version_id, []).append(r.name)
    versions = []
    for node, depth in page:
        entry = dict(nodes.describe((node, None), can_read))
        entry["key"] = nodes.version_key(node, can_read)
        entry["depth"] = depth
        if entry["type"] != "hidden":
            entry["aliases"] = aliases_by_version.get(node, [])
        versions.append(entry)
    aliases = []
    for r in alias_rows[:MAX_ALIASES]:
        node = nodes.versions.get(r.version_id)
        if node is None or not can_read(node["namespace"]):
            aliases.append({"alias": None, "hidden": True, "depth": r.depth})
            continue
        aliases.append(
            {"alias": f"{node['artifact']}@{r.name}", "name": r.name, "version": node["ref"], "depth": r.depth}
        )
    return {
        "root": nodes.version_key(version.id),
        "total_versions": total,
        "versions": versions,
        "aliases": aliases,
        "aliases_truncated": len(alias_rows) > MAX_ALIASES,
        "complete": deepest < WALK_LIMIT,
        "next": f"{page[-1][1]}.{page[-1][0]}" if more and page else None,
    }
