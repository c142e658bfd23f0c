"""A version's lineage in the formats lineage tools already read: W3C PROV-JSON and OpenLineage run events.

Both are views of the same walk (``lineage_graph.walk_edges``), up to the
ancestors or down to the descendants. Each
child version is the output of one production "run" whose inputs are its
parents; every edge keeps its type and attributes. PROV-JSON is built with the
``prov`` library (the W3C model's reference Python implementation), so the
document round-trips through any PROV tool. OpenLineage events follow spec
2-0-2 by hand: the format is a handful of plain JSON fields, and the official
client would pull an HTTP stack into the registry for nothing.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from prov.model import ProvDocument
from sqlalchemy.orm import Session

from registry import __version__
from registry.artifacts.models import Version
from registry.core.errors import ApiError
from registry.lineage.graph import MAX_QUERY_DEPTH, CanRead, EdgeRow, NodeIndex, walk_edges

MAX_EXPORT_EDGES = 10_000
OPENLINEAGE_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
VERSION_FACET_SCHEMA = (
    "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet"
)
PRODUCER = f"urn:mir:registry:{__version__}"


class _Walk:
    """The edges above (or below) a version, bounded, and the nodes they mention, with read permissions applied."""

    def __init__(self, session: Session, version: Version, *, depth: int, can_read: CanRead, up: bool) -> None:
        depth = max(1, min(depth, MAX_QUERY_DEPTH))
        self.rows: list[EdgeRow] = walk_edges(session, version.id, up=up, depth=depth, limit=MAX_EXPORT_EDGES + 1)
        if len(self.rows) > MAX_EXPORT_EDGES:
            raise ApiError(413, "lineage_too_large", f"more than {MAX_EXPORT_EDGES} edges; export with a smaller depth")
        self.root = version.id
        self.can_read = can_read
        self.nodes = NodeIndex.load(
            session,
            [version.id, *(r.child_version_id for r in self.rows), *(r.parent_version_id for r in self.rows)],
            [r.parent_external_id for r in self.rows],
        )

    def visible(self, version_id: int) -> dict[str, Any] | None:
        node = self.nodes.versions.get(version_id)
        return node if node is not None and (version_id == self.root or self.can_read(node["namespace"])) else None

    def by_child(self) -> dict[int, list[EdgeRow]]:
        grouped: dict[int, list[EdgeRow]] = {self.root: []}
        for row in self.rows:
            grouped.setdefault(row.child_version_id, []).append(row)
        return grouped


# -- PROV-JSON ----------------------------------------------------------------------------------------------


def _version_local(node: dict[str, Any]) -> str:
    return f"{node['artifact']}/versions/{node['version']}"


def _prov_value(value: Any) -> Any:
    """PROV literals are scalars; lists become their JSON text so nothing is dropped."""
    return json.dumps(value) if isinstance(value, list) else value


def to_prov(
    session: Session, version: Version, *, base_url: str, depth: int, can_read: CanRead, up: bool = True
) -> dict[str, Any]:
    """PROV-JSON: versions and external sources are entities, each child's production is an activity.

    ``used`` and ``wasDerivedFrom`` carry the edge type (``mir:trained_on``, ...) and its attributes,
    ``wasGeneratedBy`` the commit time, ``wasAssociatedWith``/``wasAttributedTo`` the pusher.
    """
    walk = _Walk(session, version, depth=depth, can_read=can_read, up=up)
    base = base_url.rstrip("/")
    doc = ProvDocument()
    doc.add_namespace("mir", f"{base}/ns/lineage#")
    doc.add_namespace("artifact", f"{base}/v1/artifacts/")
    doc.add_namespace("user", f"{base}/v1/users/")
    doc.add_namespace("hf", "https://huggingface.co/")
    doc.add_namespace("ext", "urn:mir:external:")
    entities: dict[str, Any] = {}
    agents: dict[str, Any] = {}

    def version_entity(version_id: int) -> Any:
        node = walk.visible(version_id)
        ident = f"artifact:{_version_local(node)}" if node else f"mir:hidden-{version_id}"
        if ident not in entities:
            attrs: dict[str, Any] = {"prov:type": "mir:Hidden"}
            if node:
                attrs = {
                    "prov:type": f"mir:{node['kind']}",
                    "prov:label": node["ref"],
                    "mir:manifest_digest": node["manifest_digest"],
                }
            entities[ident] = doc.entity(ident, attrs)
            if node and node.get("created_by"):
                doc.wasAttributedTo(entities[ident], agent(node["created_by"]))
        return entities[ident]

    def external_entity(external_id: int) -> Any:
        node = walk.nodes.externals[external_id]
        if node["kind"] == "huggingface":
            prefix = "" if node["repo_type"] == "model" else f"{node['repo_type']}s/"
            ident = f"hf:{prefix}{node['repo']}/tree/{node['revision']}"
            attrs = {"prov:type": "mir:HuggingFaceRepo", "prov:label": node["key"], "mir:revision": node["revision"]}
        else:
            ident = "ext:" + node["digest"].replace(":", "-")
            attrs = {"prov:type": "mir:Url", "prov:location": node["url"], "mir:digest": node["digest"]}
        if ident not in entities:
            entities[ident] = doc.entity(ident, attrs)
        return entities[ident]

    def agent(name: str) -> Any:
        if name not in agents:
            agents[name] = doc.agent(f"user:{name}", {"prov:type": "prov:Person", "prov:label": name})
        return agents[name]

    for child_id, edges in walk.by_child().items():
        child = version_entity(child_id)
        node = walk.visible(child_id)
        if not edges:
            continue
        activity_id = f"artifact:{_version_local(node)}/production" if node else f"mir:hidden-{child_id}-production"
        end = node["committed_at"] if node else None
        activity = doc.activity(activity_id, None, end, {"prov:type": "mir:Production"})
        doc.wasGeneratedBy(child, activity, end)
        if node and node.get("created_by"):
            doc.wasAssociatedWith(activity, agent(node["created_by"]))
        for edge in edges:
            if edge.parent_version_id is not None:
                parent = version_entity(edge.parent_version_id)
            elif node is None:  # what a hidden version came from is hidden with it
                parent = doc.entity(f"mir:hidden-source-{edge.id}", {"prov:type": "mir:Hidden"})
            else:
                parent = external_entity(edge.parent_external_id or 0)
            hidden = node is None or (
                edge.parent_version_id is not None and walk.visible(edge.parent_version_id) is None
            )
            extra: dict[str, Any] = {"prov:type": f"mir:{edge.type}", "mir:origin": edge.origin}
            if not hidden:
                extra.update({f"mir:{k}": _prov_value(v) for k, v in edge.attributes.items() if v is not None})
            doc.used(activity, parent, None, other_attributes={"prov:role": f"mir:{edge.type}"})
            doc.wasDerivedFrom(child, parent, activity, other_attributes=extra)
    serialized = doc.serialize(format="json")
    assert serialized is not None  # prov returns the text when no destination is given
    return dict(json.loads(serialized))


# -- OpenLineage --------------------------------------------------------------------------------------------


def _dataset(namespace: str, name: str, version: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    facets: dict[str, Any] = {
        "version": {"_producer": PRODUCER, "_schemaURL": VERSION_FACET_SCHEMA, "datasetVersion": version}
    }
    if extra:
        facets.update(extra)
    return {"namespace": namespace, "name": name, "facets": facets}


def to_openlineage(
    session: Session, version: Version, *, base_url: str, depth: int, can_read: CanRead, up: bool = True
) -> list[dict[str, Any]]:
    """One COMPLETE RunEvent per version of the walk that has parents in it (and one for the root).

    Registry versions are datasets ``<registry URL>`` / ``ns/name@version`` versioned by manifest digest;
    Hugging Face repos live under ``https://huggingface.co``; URLs under their scheme and host. Each input
    carries a ``mir_lineage`` facet with the edge type, origin and attributes. Run ids are UUIDv5 of the
    version's URL and manifest digest, so exporting twice names the same runs.
    """
    walk = _Walk(session, version, depth=depth, can_read=can_read, up=up)
    base = base_url.rstrip("/")
    lineage_schema = f"{base}/ns/openlineage/MirLineageInputDatasetFacet.json"

    def version_dataset(version_id: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        node = walk.visible(version_id)
        if node is None:
            return _dataset(base, f"hidden-{version_id}", "hidden", extra)
        return _dataset(base, node["ref"], node["manifest_digest"], extra)

    def external_dataset(external_id: int, extra: dict[str, Any]) -> dict[str, Any]:
        node = walk.nodes.externals[external_id]
        if node["kind"] == "huggingface":
            prefix = "" if node["repo_type"] == "model" else f"{node['repo_type']}s/"
            return _dataset("https://huggingface.co", f"{prefix}{node['repo']}", node["revision"], extra)
        scheme, _, rest = node["url"].partition("://")
        host, _, path = rest.partition("/")
        return _dataset(f"{scheme}://{host}", "/" + path, node["digest"], extra)

    events: list[dict[str, Any]] = []
    for child_id, edges in walk.by_child().items():
        if not edges and child_id != walk.root:
            continue
        node = walk.visible(child_id)
        inputs = []
        for edge in edges:
            hidden = node is None or (
                edge.parent_version_id is not None and walk.visible(edge.parent_version_id) is None
            )
            facet = {
                "mir_lineage": {
                    "_producer": PRODUCER,
                    "_schemaURL": lineage_schema,
                    "edgeType": edge.type,
                    "origin": edge.origin,
                    "attributes": {} if hidden else dict(edge.attributes),
                }
            }
            if edge.parent_version_id is not None:
                inputs.append(version_dataset(edge.parent_version_id, facet))
            elif node is None:  # what a hidden version came from is hidden with it
                inputs.append(_dataset(base, f"hidden-source-{edge.id}", "hidden", facet))
            else:
                inputs.append(external_dataset(edge.parent_external_id or 0, facet))
        job_name = node["ref"] if node else f"hidden-{child_id}"
        seed = f"{base}/v1/artifacts/{_version_local(node)}#{node['manifest_digest']}" if node else f"{base}#{child_id}"
        events.append(
            {
                "eventType": "COMPLETE",
                "eventTime": (node or {}).get("committed_at") or "1970-01-01T00:00:00+00:00",
                "producer": PRODUCER,
                "schemaURL": OPENLINEAGE_SCHEMA,
                "run": {"runId": str(uuid.uuid5(uuid.NAMESPACE_URL, seed)), "facets": {}},
                "job": {"namespace": base, "name": job_name, "facets": {}},
                "inputs": inputs,
                "outputs": [version_dataset(child_id)],
            }
        )
    return events
