"""What each page shows, assembled from the domain functions the API calls, in the caller's view.

Nothing here queries tables of its own: every fact comes from the function that answers the same question over
``/v1`` (listing, scans, signatures, the policy engine, synthetic provenance, quarantine, the lineage walks,
the audit log), called with the principal's ``can_read``, so a page never shows what the API would hide.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from registry.artifacts import listing
from registry.artifacts.models import Version
from registry.artifacts.versions import aliases_of, get_artifact, resolve_ref, version_to_dict
from registry.audit import log as audit
from registry.auth.tokens import Principal
from registry.core.registry_key import RegistrySigner
from registry.gate import decisions
from registry.lineage import graph as lineage_graph
from registry.lineage import quarantine
from registry.scanning import results as scans
from registry.synthetic.report import with_policy
from registry.trust import signatures
from signing.tree_head import TreeHeadError, verify_tree_head

KINDS = ("model", "dataset")
PAGE = 50
AUDIT_PAGE = 100
MAX_GRAPH_EDGES = 5000


def browse(
    s: Session, principal: Principal, *, search: str, kind: str, namespace: str, after: int
) -> dict[str, Any]:
    readable = principal.readable_namespaces()
    items, following = listing.list_artifacts(
        s, readable=readable, can_read=principal.can_read, namespace=namespace or None, kind=kind or None,
        search=search or None, limit=PAGE, after=after,
    )
    return {"items": items, "next": following,
            "namespaces": [n for n in listing.namespaces(s, readable=readable) if principal.can_read(n)]}


def artifact(s: Session, namespace: str, name: str) -> dict[str, Any]:
    art = get_artifact(s, namespace, name)
    data = listing.artifact_overview(s, art)
    data["namespace"], data["name"] = namespace, name
    data["history"] = {alias: listing.alias_history(s, art, alias) for alias in data["aliases"]}
    return data


def resolve(s: Session, namespace: str, name: str, ref: str) -> Version:
    return resolve_ref(s, get_artifact(s, namespace, name), ref)


def _signature_rows(s: Session, version: Version, signer: RegistrySigner) -> list[dict[str, Any]]:
    """Each signature with the trusted key it names (label, revoked) or the registry's countersignature."""
    keys = {k.key_id: signatures.key_to_dict(k) for k in signatures.keys_of(s, version.artifact.namespace)}
    rows = []
    for sig in signatures.signatures_of(s, version):
        key = keys.get(sig["key_id"])
        rows.append({
            "key_id": sig["key_id"], "origin": sig["origin"], "at": sig["created_at"], "by": sig["created_by"],
            "label": "the registry's key" if sig["origin"] == signatures.REGISTRY else (key or {}).get("label"),
            "revoked_at": (key or {}).get("revoked_at"),
            "registry_key": sig["origin"] == signatures.REGISTRY and sig["key_id"] == signer.key_id,
        })
    return rows


def _histogram(synthetic: dict[str, Any]) -> list[dict[str, Any]]:
    """Bars of the recursion-depth histogram, widths in percent of the chart."""
    lineage = synthetic.get("lineage") or {}
    hist = lineage.get("histogram") or {}
    return [{"depth": depth, "fraction": float(frac), "width": max(0.0, min(100.0, float(frac) * 100))}
            for depth, frac in hist.items()]


def version(s: Session, principal: Principal, version_row: Version, signer: RegistrySigner) -> dict[str, Any]:
    art = version_row.artifact
    label = f"{art.namespace}/{art.name}@{version_row.version}"
    aliases = [a for a, v in aliases_of(s, art).items() if v == version_row.version]
    data = version_to_dict(version_row, aliases=aliases)
    scan = scans.version_scan_summary(s, version_row, can_read=principal.can_read)
    by_path = {f["path"]: f for f in scan["files"]}
    for f in data["files"]:
        f["scan"] = by_path.get(f["path"], {})
    status = quarantine.quarantine_status(s, version_row, can_read=principal.can_read)
    decision = decisions.evaluate(s, version_row, None, can_read=principal.can_read)
    synthetic = with_policy(s, version_row, principal.can_read)
    data.update(
        ref=label,
        namespace=art.namespace,
        name=art.name,
        scan=scan,
        signatures=_signature_rows(s, version_row, signer),
        quarantine=status,
        quarantine_line=quarantine.describe_status(status, label) if status else None,
        decision=decisions.decision_to_dict(decision),
        synthetic=synthetic,
        histogram=_histogram(synthetic),
        parents=lineage_graph.parents_of(s, version_row, can_read=principal.can_read),
        commands={
            "pull": f"mir pull {label} ./{art.name}",
            "verify": f"mir verify {label} ./{art.name} --policy",
            "load": f'from registry.client.loader import load_verified\n'
                    f'state_dict = load_verified("{label}", "./{art.name}", device="cuda")',
        },
    )
    return data


IMPACT_ROWS = 200


def impact(s: Session, principal: Principal, version_row: Version) -> dict[str, Any]:
    """Everything downstream (the count is complete, the list the nearest IMPACT_ROWS) and every alias on it."""
    return lineage_graph.impact(s, version_row, can_read=principal.can_read, limit=IMPACT_ROWS)


def _collect(s: Session, principal: Principal, row: Version, *, up: bool, depth: int) -> tuple[
    list[dict[str, Any]], dict[str, dict[str, Any]], bool
]:
    """Every edge (paged) within ``depth`` hops one way, up to MAX_GRAPH_EDGES; whether it was cut there."""
    edges: list[dict[str, Any]] = []
    nodes: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    while True:
        page = lineage_graph.graph_page(s, row, up=up, depth=depth, can_read=principal.can_read,
                                        limit=lineage_graph.MAX_PAGE, cursor=cursor)
        edges.extend(page["edges"])
        nodes.update(page["nodes"])
        cursor = page["next"]
        if cursor is None:
            return edges, nodes, False
        if len(edges) >= MAX_GRAPH_EDGES:
            return edges, nodes, True


def graph(s: Session, principal: Principal, row: Version, *, depth: int) -> dict[str, Any]:
    """Ancestors and descendants of ``row`` as one graph for the lineage page, each version marked quarantined
    or affected (in the caller's view: hidden versions stay hidden)."""
    up_edges, up_nodes, up_cut = _collect(s, principal, row, up=True, depth=depth)
    down_edges, down_nodes, down_cut = _collect(s, principal, row, up=False, depth=depth)
    nodes = {**up_nodes, **down_nodes}
    root = f"{row.artifact.namespace}/{row.artifact.name}@{row.version}"
    nodes.setdefault(root, {"type": "version", "ref": root})
    refs = [key for key, node in nodes.items() if node.get("type") == "version"]
    for ref, mark in quarantine.marks(s, refs).items():
        nodes[ref]["mark"] = mark
    for e in up_edges:
        e["side"] = "up"
    for e in down_edges:
        e["side"] = "down"
    return {"root": root, "depth": depth, "nodes": nodes, "edges": up_edges + down_edges,
            "truncated": up_cut or down_cut}


def tree_head(s: Session, signer: RegistrySigner, log_id: str) -> dict[str, Any]:
    """The current signed tree head and whether its signature verifies under the registry's key."""
    signed = audit.current_tree_head(s, signer, log_id)
    try:
        verify_tree_head(signed, signer.public_key, log_id=log_id, key_id=signer.key_id)
        verified, problem = True, None
    except TreeHeadError as exc:
        verified, problem = False, str(exc)
    head = signed.to_dict()
    return {"head": head, "verified": verified, "problem": problem}


def audit_entries(
    s: Session, *, namespace: str | None, name: str | None, action: str | None, actor: str | None, after: int
) -> dict[str, Any]:
    rows = audit.list_entries(s, namespace=namespace, name=name, action=action, actor=actor, after=after,
                              limit=AUDIT_PAGE)
    items = [audit.entry_to_dict(r) for r in rows]
    return {"items": items, "next": items[-1]["index"] if len(items) == AUDIT_PAGE else None}
