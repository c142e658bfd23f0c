"""Lineage service rules on SQLite and PostgreSQL: declare, commit checks, cycles, walks, impact, quarantine."""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prov.model import ProvDocument
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from registry.artifacts.holdings import record_holding
from registry.artifacts.models import Version
from registry.artifacts.versions import (
    COMMITTED,
    get_artifact,
    get_or_create_artifact,
    move_alias,
    open_version,
    record_blob,
)
from registry.audit.models import AuditEntry
from registry.auth.tokens import Principal
from registry.core.errors import ApiError
from registry.core.names import parse_ref
from registry.core.parent_specs import parse_parent_spec
from registry.core.schemas import LineageDeclaration
from registry.lineage import edges as lineage
from registry.lineage import exports, quarantine
from registry.lineage import graph as lineage_graph
from registry.lineage.models import LineageEdge
from registry.push.commit import commit_version
from signing.manifest import FileEntry, Manifest
from tests.support.service import Reg, edge

HF_SHA = "0123456789abcdef0123456789abcdef01234567"
DIGEST = "sha256:" + "ab" * 32
ADMIN = Principal(token_id=1, name="admin", scopes=frozenset({"admin"}))
ALICE = Principal(token_id=2, name="alice", scopes=frozenset({"write:acme"}))


def _content(s: Session, reg: Reg, reference: str) -> Manifest:
    """A one-file manifest of its own per version (a quarantine follows identical content within a namespace)."""
    data = reference.encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if not reg.blobs.exists(digest, len(data)):
        writer = reg.blobs.writer(digest, len(data))
        writer.write(data)
        writer.commit()
    record_blob(s, digest, len(data))
    record_holding(s, parse_ref(reference).namespace, [digest])
    return Manifest.from_entries([FileEntry("weights.bin", len(data), digest)])


def open_(s: Session, reg: Reg, reference: str, decls: list[dict[str, Any]], *, who: Principal = ADMIN,
          kind: str = "model") -> tuple[Version, bool]:
    ref = parse_ref(reference, require_ref=True)
    art = get_or_create_artifact(s, ref.namespace, ref.name, kind, who.name)
    version, resumed = open_version(s, reg.blobs, art, ref.ref or "", _content(s, reg, reference), actor=who.name)
    parsed = lineage.parse_declarations(decls)
    lineage.declare_at_open(s, version, parsed, can_read=who.can_read, actor=who.name, resumed=resumed)
    return version, resumed


def push(reg: Reg, reference: str, *decls: dict[str, Any], who: Principal = ADMIN, kind: str = "model") -> int:
    with reg.session() as s:
        version, _ = open_(s, reg, reference, list(decls), who=who, kind=kind)
        commit_version(s, reg.blobs, version, actor=who.name)
        return version.id


def version_of(s: Session, reference: str) -> Version:
    ref = parse_ref(reference, require_ref=True)
    art = get_artifact(s, ref.namespace, ref.name)
    row = s.scalar(select(Version).where(Version.artifact_id == art.id, Version.version == ref.ref))
    assert row is not None
    return row


def refused(reg: Reg, fn: Any) -> ApiError:
    with pytest.raises(ApiError) as exc, reg.session() as s:
        fn(s)
    return exc.value


def actions(reg: Reg, action: str) -> list[dict[str, Any]]:
    with reg.session() as s:
        return [json.loads(e.body) for e in s.scalars(select(AuditEntry).where(AuditEntry.action == action))]


def add(reg: Reg, child: str, decl: dict[str, Any], who: Principal = ADMIN) -> LineageEdge:
    with reg.session() as s:
        parsed = lineage.parse_declaration(decl)
        return lineage.add_edge(s, version_of(s, child), parsed, can_read=who.can_read, actor=who.name)


# -- declaring at push ------------------------------------------------------------------------------------------


def test_declared_lineage_is_stored_with_the_version(reg: Reg) -> None:
    push(reg, "acme/corpus@1", kind="dataset")
    push(
        reg,
        "acme/bert@1",
        edge("trained_on", "acme/corpus@1", split="train", mixture_fraction=0.7, record_count=1000),
        edge("fine_tuned_from", {"external": {"kind": "huggingface", "repo": "google/bert-base", "revision": HF_SHA}}),
        edge("trained_on", {"external": {"kind": "url", "url": "https://data.example/c4.tar", "digest": DIGEST}},
             mixture_fraction=0.3),
        edge("evaluated_on", {"external": {"kind": "huggingface", "repo": "org/glue", "revision": HF_SHA,
                                           "repo_type": "dataset"}}),
    )
    with reg.session() as s:
        parents = lineage_graph.parents_of(s, version_of(s, "acme/bert@1"), can_read=ADMIN.can_read)
    assert [(p["type"], p["parent"]) for p in parents] == [
        ("trained_on", "acme/corpus@1"),
        ("fine_tuned_from", f"hf://google/bert-base@{HF_SHA}"),
        ("trained_on", f"https://data.example/c4.tar#{DIGEST}"),
        ("evaluated_on", f"hf://datasets/org/glue@{HF_SHA}"),
    ]
    assert parents[0]["attributes"] == {"split": "train", "mixture_fraction": 0.7, "record_count": 1000}
    assert all(p["origin"] == "declared" and p["at_push"] for p in parents)
    declared = actions(reg, "lineage.declared")
    assert len(declared) == 1 and declared[0]["details"]["edge_count"] == 4
    assert declared[0]["details"]["lineage_digest"].startswith("sha256:")
    # external sources are shared nodes: a second version naming the same repo reuses it
    push(reg, "acme/bert@2", edge("fine_tuned_from", {"external": {"kind": "huggingface", "repo": "google/bert-base",
                                                                    "revision": HF_SHA}}))
    with reg.session() as s:
        ext_ids = {e.parent_external_id for e in s.scalars(select(LineageEdge).where(LineageEdge.type ==
                                                                                        "fine_tuned_from"))}
    assert len(ext_ids) == 1


def test_alias_parent_is_pinned_to_the_version_it_pointed_at(reg: Reg) -> None:
    push(reg, "acme/corpus@1", kind="dataset")
    push(reg, "acme/corpus@2", kind="dataset")
    with reg.session() as s:
        art = get_artifact(s, "acme", "corpus")
        move_alias(s, art, "prod", version_of(s, "acme/corpus@1"), actor="admin")
    push(reg, "acme/model@1", edge("trained_on", "acme/corpus@prod"))
    with reg.session() as s:
        move_alias(s, get_artifact(s, "acme", "corpus"), "prod", version_of(s, "acme/corpus@2"), actor="admin")
        parents = lineage_graph.parents_of(s, version_of(s, "acme/model@1"), can_read=ADMIN.can_read)
    assert [p["parent"] for p in parents] == ["acme/corpus@1"]


BAD_DECLARATIONS: list[tuple[str, Any, int, str]] = [
    ("unknown type", edge("inspired_by", "acme/corpus@1"), 400, "invalid_lineage"),
    ("not an object", "acme/corpus@1", 400, "invalid_lineage"),
    ("extra field", {**edge("trained_on", "acme/corpus@1"), "weight": 1}, 400, "invalid_lineage"),
    ("malformed ref", edge("trained_on", "acme/../corpus@1"), 400, "invalid_lineage"),
    ("ref without version", edge("trained_on", "acme/corpus"), 400, "invalid_lineage"),
    ("both ref and external", {"type": "trained_on", "parent": {"ref": "acme/corpus@1", "external": {
        "kind": "url", "url": "https://x.example/a", "digest": DIGEST}}}, 400, "invalid_lineage"),
    ("neither", {"type": "trained_on", "parent": {}}, 400, "invalid_lineage"),
    ("hf branch, not commit", edge("trained_on", {"external": {"kind": "huggingface", "repo": "a/b",
                                                               "revision": "main"}}), 400, "invalid_lineage"),
    ("hf bad repo", edge("trained_on", {"external": {"kind": "huggingface", "repo": "a/../b",
                                                     "revision": HF_SHA}}), 400, "invalid_lineage"),
    ("url with credentials", edge("trained_on", {"external": {"kind": "url", "url": "https://u:p@x.example/a",
                                                              "digest": DIGEST}}), 400, "invalid_lineage"),
    ("url file scheme", edge("trained_on", {"external": {"kind": "url", "url": "file:///etc/passwd",
                                                         "digest": DIGEST}}), 400, "invalid_lineage"),
    ("url bad digest", edge("trained_on", {"external": {"kind": "url", "url": "https://x.example/a",
                                                        "digest": "md5:abc"}}), 400, "invalid_lineage"),
    ("unknown external kind", edge("trained_on", {"external": {"kind": "s3", "bucket": "b"}}), 400,
     "invalid_lineage"),
    ("oversize attributes", edge("trained_on", "acme/corpus@1", note="x" * 1000, n2="x" * 1000, n3="x" * 1000,
                                 n4="x" * 1000, n5="x" * 1000), 400, "invalid_lineage"),
    ("too many attributes", edge("trained_on", "acme/corpus@1", **{f"a{i}": i for i in range(40)}), 400,
     "invalid_lineage"),
    ("nested attribute", edge("trained_on", "acme/corpus@1", nested={"a": 1}), 400, "invalid_lineage"),
    ("fraction out of range", edge("trained_on", "acme/corpus@1", mixture_fraction=1.5), 400, "invalid_lineage"),
    ("negative record count", edge("trained_on", "acme/corpus@1", record_count=-1), 400, "invalid_lineage"),
    ("huge integer", edge("trained_on", "acme/corpus@1", record_count=2**60), 400, "invalid_lineage"),
    ("bad attribute name", edge("trained_on", "acme/corpus@1", **{"Bad-Key": 1}), 400, "invalid_lineage"),
    ("lone surrogate", edge("trained_on", "acme/corpus@1", role="\ud800"), 400, "invalid_lineage"),
    ("missing parent", edge("trained_on", "acme/nothing@1"), 404, "lineage_parent_not_found"),
    ("missing version", edge("trained_on", "acme/corpus@9"), 404, "lineage_parent_not_found"),
    ("unreadable namespace", edge("trained_on", "secret/corpus@1"), 403, "forbidden"),
    ("self edge", edge("derived_from", "acme/new@1"), 400, "lineage_self_edge"),
    ("parent still open", edge("trained_on", "acme/open@1"), 409, "lineage_parent_not_committed"),
]


def test_bad_declarations_are_clear_4xx(reg: Reg) -> None:
    push(reg, "acme/corpus@1", kind="dataset")
    push(reg, "secret/corpus@1", kind="dataset")
    with reg.session() as s:
        open_(s, reg, "acme/open@1", [])
    problems = []
    for label, decl, status, code in BAD_DECLARATIONS:
        with pytest.raises(ApiError) as exc, reg.session() as s:
            open_(s, reg, "acme/new@1", [decl], who=ALICE)
        err = exc.value
        if (err.status, err.code) != (status, code):
            problems.append(f"{label}: got {err.status} {err.code}: {err.message}")
        assert "lineage" in err.message or "namespace" in err.message, err.message
    assert not problems, problems
    duplicate = refused(reg, lambda s: open_(s, reg, "acme/new@1", [edge("trained_on", "acme/corpus@1")] * 2))
    assert (duplicate.status, duplicate.code) == (400, "invalid_lineage") and "twice" in duplicate.message
    with reg.session() as s:  # nothing was left behind by the refusals
        assert s.scalar(select(LineageEdge.id).where(LineageEdge.child_version_id.is_not(None)).limit(1)) is None


@settings(max_examples=60, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=3), max_leaves=8))
def test_any_json_declaration_is_parsed_or_refused_with_400(value: Any) -> None:
    for candidate in (value, {"type": "trained_on", "parent": value}, {"type": "trained_on", "parent": {
            "ref": "acme/x@1"}, "attributes": value}):
        try:
            parsed = lineage.parse_declaration(candidate)
        except ApiError as exc:
            assert exc.status == 400 and exc.code == "invalid_lineage" and exc.message
        else:
            assert isinstance(parsed, LineageDeclaration)
            json.dumps(parsed.attributes, allow_nan=False)


def test_resume_requires_the_same_lineage(reg: Reg) -> None:
    push(reg, "acme/corpus@1", kind="dataset")
    push(reg, "acme/corpus@2", kind="dataset")
    decls = [edge("trained_on", "acme/corpus@1", split="train")]
    with reg.session() as s:
        open_(s, reg, "acme/m@1", decls)
    with reg.session() as s:
        _, resumed = open_(s, reg, "acme/m@1", decls)
        assert resumed
    for other in ([], [edge("trained_on", "acme/corpus@2")], [edge("trained_on", "acme/corpus@1", split="test")]):
        err = refused(reg, lambda s, other=other: open_(s, reg, "acme/m@1", other))
        assert (err.status, err.code) == (409, "open_version_conflict")


def test_commit_rechecks_parents_and_cycles(reg: Reg) -> None:
    """Defence in depth: rows slipped in behind the service's back are still refused at commit."""
    push(reg, "acme/base@1")
    with reg.session() as s:
        open_(s, reg, "acme/half@1", [])
        open_(s, reg, "acme/child@1", [])
    with reg.session() as s:
        child, half = version_of(s, "acme/child@1"), version_of(s, "acme/half@1")
        s.execute(insert(LineageEdge), [{"child_version_id": child.id, "parent_version_id": half.id,
                                          "type": "derived_from", "attributes": {}, "origin": "declared",
                                          "at_push": True}])
    err = refused(reg, lambda s: commit_version(s, reg.blobs, version_of(s, "acme/child@1"), actor="admin"))
    assert (err.status, err.code) == (409, "lineage_parent_not_committed")
    with reg.session() as s:
        base, loop = version_of(s, "acme/base@1"), version_of(s, "acme/half@1")
        s.execute(insert(LineageEdge), [
            {"child_version_id": loop.id, "parent_version_id": base.id, "type": "derived_from", "attributes": {},
             "origin": "declared", "at_push": True},
            {"child_version_id": base.id, "parent_version_id": loop.id, "type": "merged_from", "attributes": {},
             "origin": "declared", "at_push": False},
        ])
    err = refused(reg, lambda s: commit_version(s, reg.blobs, version_of(s, "acme/half@1"), actor="admin"))
    assert (err.status, err.code) == (409, "lineage_cycle")


# -- edges added later ------------------------------------------------------------------------------------------


def test_edges_added_later_are_audited_and_cycles_refused(reg: Reg) -> None:
    for ref in ("acme/a@1", "acme/b@1", "acme/c@1", "acme/d@1"):
        push(reg, ref)
    add(reg, "acme/b@1", edge("derived_from", "acme/a@1"))
    add(reg, "acme/c@1", edge("derived_from", "acme/b@1", role="student"))
    added = actions(reg, "lineage.edge_added")
    assert [(a["version"], a["details"]["parent"]) for a in added] == [("1", "acme/a@1"), ("1", "acme/b@1")]
    assert added[1]["details"]["attributes"] == {"role": "student"} and added[1]["artifact"] == "acme/c"
    with reg.session() as s:
        edges = lineage_graph.parents_of(s, version_of(s, "acme/c@1"), can_read=ADMIN.can_read)
    assert edges[0]["origin"] == "declared" and edges[0]["at_push"] is False
    cases = [
        ("acme/a@1", edge("derived_from", "acme/c@1"), 409, "lineage_cycle"),  # a <- b <- c <- a
        ("acme/a@1", edge("merged_from", "acme/b@1"), 409, "lineage_cycle"),
        ("acme/a@1", edge("derived_from", "acme/a@1"), 400, "lineage_self_edge"),
        ("acme/c@1", edge("derived_from", "acme/b@1"), 409, "edge_exists"),
        ("acme/c@1", edge("derived_from", "secret/x@1"), 403, "forbidden"),
    ]
    for child, decl, status, code in cases:
        err = refused(reg, lambda s, child=child, decl=decl: lineage.add_edge(
            s, version_of(s, child), lineage.parse_declaration(decl), can_read=ALICE.can_read, actor="alice"))
        assert (err.status, err.code) == (status, code), (decl, err.message)
    add(reg, "acme/c@1", edge("merged_from", "acme/b@1"))  # another type between the same pair is fine
    add(reg, "acme/d@1", edge("derived_from", "acme/c@1"))
    with reg.session() as s:
        open_(s, reg, "acme/e@1", [])
    err = refused(reg, lambda s: lineage.add_edge(s, version_of(s, "acme/e@1"), lineage.parse_declaration(
        edge("derived_from", "acme/a@1")), can_read=ADMIN.can_read, actor="admin"))
    assert (err.status, err.code) == (409, "version_not_committed")
    with reg.session() as s:
        recorded = lineage.record_edge(s, version_of(s, "acme/d@1"), lineage.parse_declaration(
            edge("imported_from", {"external": {"kind": "huggingface", "repo": "org/d", "revision": HF_SHA}})),
            actor="mir")
        assert recorded.origin == "recorded"


# -- walks ------------------------------------------------------------------------------------------------------


def build_graph(reg: Reg) -> None:
    """d0 <- m1 <- m2 <- m3 <- m4 <- m5 (a chain), plus a diamond m1 <- x <- m3 and an external on m1."""
    push(reg, "acme/d0@1", kind="dataset")
    push(reg, "acme/m1@1", edge("trained_on", "acme/d0@1", mixture_fraction=0.5),
         edge("fine_tuned_from", {"external": {"kind": "huggingface", "repo": "org/base", "revision": HF_SHA}}))
    push(reg, "acme/m2@1", edge("fine_tuned_from", "acme/m1@1"))
    push(reg, "shared/x@1", edge("distilled_from", "acme/m1@1"))
    push(reg, "acme/m3@1", edge("fine_tuned_from", "acme/m2@1"), edge("merged_from", "shared/x@1", weight=0.5))
    push(reg, "acme/m4@1", edge("quantized_from", "acme/m3@1", bits=4))
    push(reg, "acme/m5@1", edge("converted_from", "acme/m4@1"))


def page_all(s: Session, version: Version, *, up: bool, depth: int, limit: int, who: Principal = ADMIN
             ) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = lineage_graph.graph_page(s, version, up=up, depth=depth, can_read=who.can_read, limit=limit,
                                        cursor=cursor)
        out.extend(page["edges"])
        cursor = page["next"]
        if cursor is None:
            return out


def test_ancestors_and_descendants_with_depth_and_pages(reg: Reg) -> None:
    build_graph(reg)
    with reg.session() as s:
        m5, d0 = version_of(s, "acme/m5@1"), version_of(s, "acme/d0@1")
        full = lineage_graph.graph_page(s, m5, up=True, depth=10, can_read=ADMIN.can_read)
        assert full["root"] == "acme/m5@1" and full["next"] is None
        pairs = [(e["child"], e["parent"], e["depth"]) for e in full["edges"]]
        assert pairs[:3] == [("acme/m5@1", "acme/m4@1", 1), ("acme/m4@1", "acme/m3@1", 2),
                             ("acme/m3@1", "acme/m2@1", 3)]
        assert ("acme/m1@1", "acme/d0@1", 5) in pairs and ("acme/m1@1", f"hf://org/base@{HF_SHA}", 5) in pairs
        assert len(pairs) == len(set(pairs)) == 8  # the diamond's shared ancestors appear once
        d0_edge = next(e for e in full["edges"] if e["parent"] == "acme/d0@1")
        assert d0_edge["attributes"] == {"mixture_fraction": 0.5} and d0_edge["type"] == "trained_on"
        assert full["nodes"]["acme/d0@1"]["kind"] == "dataset"
        assert full["nodes"][f"hf://org/base@{HF_SHA}"]["url"].endswith(f"/org/base/tree/{HF_SHA}")
        shallow = lineage_graph.graph_page(s, m5, up=True, depth=2, can_read=ADMIN.can_read)
        assert [e["parent"] for e in shallow["edges"]] == ["acme/m4@1", "acme/m3@1"]
        for limit in (1, 2, 3):
            assert page_all(s, m5, up=True, depth=10, limit=limit) == full["edges"]
        down = page_all(s, d0, up=False, depth=10, limit=2)
        assert [e["child"] for e in down][:1] == ["acme/m1@1"]
        assert {e["child"] for e in down} == {"acme/m1@1", "acme/m2@1", "shared/x@1", "acme/m3@1", "acme/m4@1",
                                              "acme/m5@1"}
        hidden = page_all(s, m5, up=True, depth=10, limit=100, who=ALICE)
        # alice may write (so read) acme but not read shared: shared/x is hidden, the walk goes on through it
        assert any(e["parent"].startswith("hidden:") and e["attributes"] == {} for e in hidden)
        assert not any("shared/x" in json.dumps(e) for e in hidden)
    bad = refused(reg, lambda s: lineage_graph.graph_page(s, version_of(s, "acme/m5@1"), up=True, depth=3,
                                                          can_read=ADMIN.can_read, cursor="drop table"))
    assert (bad.status, bad.code) == (400, "invalid_cursor")


def test_path_between_versions(reg: Reg) -> None:
    build_graph(reg)
    push(reg, "acme/lonely@1")
    with reg.session() as s:
        m5, d0, lonely = (version_of(s, r) for r in ("acme/m5@1", "acme/d0@1", "acme/lonely@1"))
        up = lineage_graph.find_path(s, m5, d0, can_read=ADMIN.can_read)
        assert up["direction"] == "up"
        chain = [(e["child"], e["parent"]) for e in up["path"]]
        assert chain[0] == ("acme/m5@1", "acme/m4@1") and chain[-1] == ("acme/m1@1", "acme/d0@1")
        assert len(chain) == 5 and all(a[1] == b[0] for a, b in itertools.pairwise(chain))
        down = lineage_graph.find_path(s, d0, m5, can_read=ADMIN.can_read)
        assert down["direction"] == "down" and len(down["path"]) == 5
        assert down["path"][0]["parent"] == "acme/d0@1"
        assert lineage_graph.find_path(s, m5, lonely, can_read=ADMIN.can_read)["path"] is None
        assert lineage_graph.find_path(s, m5, d0, can_read=ADMIN.can_read, max_depth=3)["path"] is None


def test_impact_lists_descendants_and_their_aliases(reg: Reg) -> None:
    build_graph(reg)
    with reg.session() as s:
        move_alias(s, get_artifact(s, "acme", "m4"), "prod", version_of(s, "acme/m4@1"), actor="admin")
        move_alias(s, get_artifact(s, "acme", "d0"), "gold", version_of(s, "acme/d0@1"), actor="admin")
    with reg.session() as s:
        open_(s, reg, "acme/m6@1", [edge("derived_from", "acme/m5@1")])  # open uploads are not versions yet
    with reg.session() as s:
        d0 = version_of(s, "acme/d0@1")
        result = lineage_graph.impact(s, d0, can_read=ADMIN.can_read)
        assert result["total_versions"] == 6 and result["complete"] and result["next"] is None
        assert [v["ref"] for v in result["versions"]][:1] == ["acme/m1@1"]
        aliases = {a["alias"] for a in result["aliases"]}
        assert {"acme/m4@prod", "acme/d0@gold", "acme/m5@latest"} <= aliases
        assert "acme/m6@latest" not in aliases
        m4 = next(v for v in result["versions"] if v["ref"] == "acme/m4@1")
        assert "prod" in m4["aliases"]
        seen, cursor = [], None
        while True:
            page = lineage_graph.impact(s, d0, can_read=ADMIN.can_read, limit=4, cursor=cursor)
            seen.extend(v["ref"] for v in page["versions"])
            if (cursor := page["next"]) is None:
                break
        assert seen == [v["ref"] for v in result["versions"]]
        hidden = lineage_graph.impact(s, d0, can_read=ALICE.can_read)
        assert sum(v["type"] == "hidden" for v in hidden["versions"]) == 1


# -- quarantine -------------------------------------------------------------------------------------------------


def test_quarantine_marks_descendants_affected_and_gates_downloads(reg: Reg) -> None:
    build_graph(reg)
    push(reg, "acme/unrelated@1")
    with reg.session() as s:
        result = quarantine.quarantine_version(s, version_of(s, "acme/m1@1"), reason="poisoned data", actor="admin")
        assert result["impact"]["total_versions"] == 5
    with reg.session() as s:
        assert quarantine.quarantine_status(s, version_of(s, "acme/m1@1"))["status"] == "quarantined"  # type: ignore[index]
        m5 = quarantine.quarantine_status(s, version_of(s, "acme/m5@1"))
        assert m5 is not None and m5["status"] == "affected"
        assert m5["sources"][0]["version"] == "acme/m1@1" and m5["sources"][0]["reason"] == "poisoned data"
        assert quarantine.quarantine_status(s, version_of(s, "acme/d0@1")) is None
        assert quarantine.quarantine_status(s, version_of(s, "acme/unrelated@1")) is None
        assert quarantine.download_gate(s, version_of(s, "acme/m5@1"), is_admin=False, actor="alice",
                                        override=False)["status"] == "affected"  # type: ignore[index]
    err = refused(reg, lambda s: quarantine.download_gate(s, version_of(s, "acme/m1@1"), is_admin=True,
                                                          actor="admin", override=False))
    assert (err.status, err.code) == (403, "version_quarantined") and "poisoned data" in err.message
    err = refused(reg, lambda s: quarantine.download_gate(s, version_of(s, "acme/m1@1"), is_admin=False,
                                                          actor="alice", override=True))
    assert (err.status, err.code) == (403, "forbidden")
    with reg.session() as s:
        quarantine.download_gate(s, version_of(s, "acme/m1@1"), is_admin=True, actor="admin", override=True,
                                 path="model.safetensors")
    overrides = actions(reg, "version.quarantine_override")
    assert len(overrides) == 1 and overrides[0]["details"]["path"] == "model.safetensors"
    again = refused(reg, lambda s: quarantine.quarantine_version(s, version_of(s, "acme/m1@1"), reason="x",
                                                                 actor="admin"))
    assert (again.status, again.code) == (409, "already_quarantined")
    # versions that join the graph later are affected too: a new push and an edge added after the fact
    push(reg, "acme/late@1", edge("fine_tuned_from", "acme/m5@1"))
    add(reg, "acme/unrelated@1", edge("evaluated_on", "acme/m2@1"))
    with reg.session() as s:
        assert quarantine.quarantine_status(s, version_of(s, "acme/late@1"))["status"] == "affected"  # type: ignore[index]
        assert quarantine.quarantine_status(s, version_of(s, "acme/unrelated@1")) is not None
        hidden = quarantine.quarantine_status(s, version_of(s, "acme/m5@1"), can_read=lambda ns: ns == "acme")
        assert hidden is not None and hidden["sources"][0]["version"] == "acme/m1@1"
        quarantine.lift_quarantine(s, version_of(s, "acme/m1@1"), reason="false alarm", actor="admin")
    with reg.session() as s:
        assert quarantine.quarantine_status(s, version_of(s, "acme/m5@1")) is None
        assert quarantine.list_quarantines(s) == []
        assert quarantine.list_quarantines(s, active_only=False)[0]["lift_reason"] == "false alarm"
    err = refused(reg, lambda s: quarantine.lift_quarantine(s, version_of(s, "acme/m1@1"), reason="x", actor="a"))
    assert (err.status, err.code) == (409, "not_quarantined")
    assert [a["details"]["reason"] for a in actions(reg, "version.quarantined")] == ["poisoned data"]
    assert actions(reg, "version.quarantined")[0]["details"]["affected_versions"] == 5
    assert [a["details"]["reason"] for a in actions(reg, "version.unquarantined")] == ["false alarm"]


# -- exports ----------------------------------------------------------------------------------------------------


def test_prov_and_openlineage_exports(reg: Reg) -> None:
    build_graph(reg)
    push(reg, "acme/m6@1", edge("derived_from", {"external": {"kind": "url", "url": "https://x.example/a.bin",
                                                               "digest": DIGEST}}, tags=["a", "b"]))
    with reg.session() as s:
        m5 = version_of(s, "acme/m5@1")
        doc = exports.to_prov(s, m5, base_url="http://reg.test", depth=10, can_read=ADMIN.can_read)
        events = exports.to_openlineage(s, m5, base_url="http://reg.test", depth=10, can_read=ADMIN.can_read)
        url_doc = exports.to_prov(s, version_of(s, "acme/m6@1"), base_url="http://reg.test", depth=10,
                                  can_read=ADMIN.can_read)
    for key in ("prefix", "entity", "activity", "wasDerivedFrom", "used", "wasGeneratedBy", "agent"):
        assert key in doc, key
    assert "artifact:acme/m5/versions/1" in doc["entity"]
    derived = list(doc["wasDerivedFrom"].values())
    assert len(derived) == 8
    trained = next(d for d in derived if d["prov:usedEntity"] == "artifact:acme/d0/versions/1")
    assert trained["prov:type"] == "mir:trained_on" and "mir:mixture_fraction" in trained
    parsed = ProvDocument.deserialize(content=json.dumps(doc), format="json")
    assert len(parsed.get_records()) > 10
    url_entity = next(v for k, v in url_doc["entity"].items() if k.startswith("ext:"))
    assert url_entity["prov:location"] == "https://x.example/a.bin"
    assert len(events) == 6  # m5, m4, m3, m2, x, m1: each produced from its parents
    for event in events:
        for key in ("eventType", "eventTime", "run", "job", "inputs", "outputs", "producer", "schemaURL"):
            assert key in event, key
        assert event["eventType"] == "COMPLETE" and event["schemaURL"].startswith("https://openlineage.io/spec/")
        assert len(event["run"]["runId"]) == 36 and event["outputs"] and event["inputs"]
        for dataset in event["inputs"] + event["outputs"]:
            assert dataset["namespace"] and dataset["name"]
            for facet in dataset["facets"].values():
                assert facet["_producer"] and facet["_schemaURL"]
    m1 = next(e for e in events if e["job"]["name"] == "acme/m1@1")
    hf = next(i for i in m1["inputs"] if i["namespace"] == "https://huggingface.co")
    assert hf["name"] == "org/base" and hf["facets"]["version"]["datasetVersion"] == HF_SHA
    d0 = next(i for i in m1["inputs"] if i["name"] == "acme/d0@1")
    assert d0["facets"]["mir_lineage"]["attributes"] == {"mixture_fraction": 0.5}
    with reg.session() as s:
        again = exports.to_openlineage(s, version_of(s, "acme/m5@1"), base_url="http://reg.test", depth=10,
                                       can_read=ADMIN.can_read)
    assert [e["run"]["runId"] for e in again] == [e["run"]["runId"] for e in events]


def test_parent_spec_parsing() -> None:
    assert lineage_graph.COMMITTED == COMMITTED
    assert parse_parent_spec("acme/corpus@1") == {"ref": "acme/corpus@1"}
    assert parse_parent_spec(f"hf:datasets/org/c4@{HF_SHA}")["external"] == {
        "kind": "huggingface", "repo": "org/c4", "revision": HF_SHA, "repo_type": "dataset"}
    assert parse_parent_spec(f"hf://org/m@{HF_SHA}")["external"]["repo_type"] == "model"
    assert parse_parent_spec("https://x.example/a.tar#sha256=" + "ab" * 32)["external"] == {
        "kind": "url", "url": "https://x.example/a.tar", "digest": DIGEST}
    for bad in ("hf:org/m", "https://x.example/a.tar", "https://x.example/a.tar#sha256"):
        with pytest.raises(ValueError, match="pin"):
            parse_parent_spec(bad)
