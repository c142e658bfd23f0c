"""Synthetic-data provenance from lineage (layer 1): how much of a version is, or learned from, model output.

Every dataset and model gets a *provenance distribution*: the share of its data
at each recursion depth, plus an ``unknown`` share. Depth 0 is human data,
depth 1 is data made by a model trained on human data only, depth n+1 is data
made by a model whose training data reached depth n. For a dataset the
distribution describes its records; for a model, the data it learned from.

Rules (computed on read from one bounded lineage walk; nothing is cached):

* A dataset's inputs are its ``generated_by``, ``derived_from``,
  ``imported_from`` and ``converted_from`` edges. ``generated_by`` model M
  gives data at depth ``1 + max depth of M's training data``; when M's
  training data is partly unknown (or M is external) that depth is a lower
  bound and the summary says so (``depth_lower_bound``). A ``derived_from``
  (etc.) registry parent contributes its own distribution (a model parent
  counts as its generated data).
* External parents are unknown, except: an edge with attribute
  ``"human": true`` declares the external source human-written (depth 0),
  and a ``generated_by`` external model gives depth >= 1 (lower bound).
* Mixing: edges with ``mixture_fraction`` take that share (the fractions must
  sum to at most 1, else the whole version is unknown: fail closed). The
  remainder goes to the inputs without a fraction, weighted by their
  ``record_count`` attribute when all of them have one, else equally (the
  summary notes which). When a dataset has ``generated_by`` inputs, that
  remainder goes to the generated inputs only: the other parents are taken
  as the prompts or seeds the generator was conditioned on; give fractions to
  say otherwise. A remainder no input takes is the version's own new data,
  of unknown provenance.
* A model's training data mixes its ``trained_on`` datasets with its model
  parents under the same weighting: ``fine_tuned_from``, ``merged_from``,
  ``adapter_of``, ``quantized_from`` and ``converted_from`` parents
  contribute their own training distributions; a ``distilled_from`` teacher
  contributes its *generated* data (the student learned from the teacher's
  outputs), one level deeper than the teacher's training data.
* A version with no such inputs, or a parent beyond the walk bound
  (``MAX_WALK_DEPTH`` hops), is unknown: fail closed. ``evaluated_on`` edges
  do not count.
* Measured floor: a dataset whose contamination scan matched a share ``m`` of
  its records to registered synthetic data is at least ``m`` synthetic,
  whatever its lineage declares. The missing share is moved to synthetic from
  the unknown share first, then from the declared human share, at the depth
  of the matched datasets' content (their deepest; a lower bound when one of
  them cannot be resolved). Descendants inherit the raised share through the
  rules above, so both policy paths (``/v1/verify`` and the attested facts of
  an offline bundle) see it. A dataset not yet analysed has no floor yet.
* Absolute human data kept: for a dataset whose record count is known (the
  contamination step counts records), ``records x human share``; for a model,
  the sum over its inputs of ``records used x human share`` (records used is
  the edge's ``record_count``, else the parent dataset's count), plus its
  model parents' own human records. ``human_records_complete`` says whether
  every input's count was known.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.artifacts.models import Artifact, Version
from registry.lineage.graph import CanRead, EdgeRow, NodeIndex, everyone, walk_edges
from registry.synthetic.models import ContaminationResult

MAX_WALK_DEPTH = 64
MAX_MATCHED_DATASETS = 20  # matched synthetic datasets whose depth is looked up for a measured floor
EPS = 1e-9
UNKNOWN = "unknown"
DATA_EDGES = frozenset({"generated_by", "derived_from", "imported_from", "converted_from"})
TRAINING_EDGES = frozenset({"trained_on"})
MODEL_PARENT_EDGES = frozenset({"fine_tuned_from", "merged_from", "adapter_of", "quantized_from", "converted_from"})
TEACHER_EDGES = frozenset({"distilled_from"})

Depth = int | None  # None: unknown provenance


@dataclass
class Provenance:
    """A distribution over recursion depth (None = unknown) with record accounting and explanations."""

    dist: dict[Depth, float]
    lower_bound: bool = False
    records: int | None = None
    human_records: float | None = None
    human_complete: bool = False
    notes: list[str] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def unknown(cls, note: str | None = None) -> Provenance:
        return cls({None: 1.0}, notes=[note] if note else [])

    @classmethod
    def human(cls) -> Provenance:
        return cls({0: 1.0}, human_complete=False)

    @property
    def synthetic_fraction(self) -> float:
        return sum(share for depth, share in self.dist.items() if depth is not None and depth >= 1)

    @property
    def unknown_fraction(self) -> float:
        return self.dist.get(None, 0.0)

    @property
    def human_fraction(self) -> float:
        return self.dist.get(0, 0.0)

    @property
    def max_depth(self) -> int | None:
        known = [d for d, share in self.dist.items() if d is not None and share > EPS]
        return max(known) if known else None

    def generated(self) -> Provenance:
        """The provenance of data a model with this training distribution generates."""
        depth = 1 + (self.max_depth or 0)
        return Provenance({depth: 1.0}, lower_bound=self.lower_bound or self.unknown_fraction > EPS)


@dataclass
class _Component:
    label: str
    edge_type: str
    prov: Provenance
    fraction: float | None
    record_count: int | None
    records_used: int | None
    generated: bool
    human_records: float | None


class _Graph:
    """The ancestry of one version, loaded once: edges by child, node descriptions, dataset record counts."""

    def __init__(
        self, session: Session, root: int, depth: int, can_read: CanRead = everyone,
        visiting: frozenset[int] = frozenset(),
    ) -> None:
        self.can_read = can_read  # labels of versions the caller may not read come out as ``hidden:<id>``
        rows = walk_edges(session, root, up=True, depth=depth)
        self.by_child: dict[int, list[EdgeRow]] = defaultdict(list)
        for row in rows:
            self.by_child[row.child_version_id].append(row)
        self.truncated = {r.parent_version_id for r in rows if r.depth >= depth and r.parent_version_id is not None}
        version_ids = {root, *(r.parent_version_id for r in rows if r.parent_version_id is not None)}
        self.nodes = NodeIndex.load(session, version_ids, [r.parent_external_id for r in rows])
        self.session = session
        self.visiting = visiting | {root}
        self.records: dict[int, int] = {}
        self.measured: dict[int, tuple[float, dict[str, int]]] = {}
        for vid, total, fraction, report in session.execute(
            select(ContaminationResult.version_id, ContaminationResult.total_records,
                   ContaminationResult.matched_fraction, ContaminationResult.report).where(
                ContaminationResult.version_id.in_(sorted(version_ids))
            )
        ):
            if total is not None:
                self.records[vid] = int(total)
            if fraction is not None and fraction > EPS:
                per_dataset = ((report or {}).get("fingerprint") or {}).get("per_dataset") or {}
                self.measured[vid] = (float(fraction), {str(k): int(v) for k, v in per_dataset.items()})
        self._memo: dict[tuple[int, str], Provenance] = {}

    def kind(self, vid: int) -> str:
        return str(self.nodes.versions.get(vid, {}).get("kind", "unknown"))

    def ref(self, vid: int) -> str:
        return self.nodes.version_key(vid, self.can_read)

    def provenance(self, vid: int, role: str) -> Provenance:
        """``role`` is ``content`` (what a dataset holds), ``training`` (what a model learned) or ``generated``."""
        key = (vid, role)
        if key not in self._memo:
            if vid in self.truncated:
                prov = Provenance.unknown(f"lineage of {self.ref(vid)} is deeper than {MAX_WALK_DEPTH} hops: unknown")
            elif role == "generated":
                prov = self.provenance(vid, "training").generated()
            elif role == "training":
                prov = self._mix(vid, training=True)
            else:
                prov = self._mix(vid, training=False)
                if vid in self.measured and self.kind(vid) == "dataset":
                    prov = self._floor(vid, prov)
                if vid in self.records:
                    prov.records = self.records[vid]
                    prov.human_records = self.records[vid] * prov.human_fraction
                    prov.human_complete = True
            self._memo[key] = prov
        return self._memo[key]

    def _floor(self, vid: int, prov: Provenance) -> Provenance:
        """Raise the synthetic share to what the contamination scan measured (see the module's rules)."""
        fraction, per_dataset = self.measured[vid]
        deficit = fraction - prov.synthetic_fraction
        if deficit <= EPS:
            return prov
        depth, lower = self._matched_depth(per_dataset)
        dist = dict(prov.dist)
        moved: dict[Depth, float] = {}
        for key in (None, 0):
            take = min(deficit - sum(moved.values()), dist.get(key, 0.0))
            if take > EPS:
                moved[key] = take
                dist[key] = dist.get(key, 0.0) - take
        dist[depth] = dist.get(depth, 0.0) + sum(moved.values())
        note = (f"the contamination scan matched {fraction:.1%} of {self.ref(vid)}'s records to registered "
                f"synthetic data: at least that share is synthetic (depth {'>=' if lower else ''}{depth}; "
                f"{moved.get(None, 0.0):.1%} was unknown, {moved.get(0, 0.0):.1%} declared human)")
        return Provenance(
            {d: share for d, share in dist.items() if share > EPS},
            lower_bound=prov.lower_bound or lower, records=prov.records, human_records=prov.human_records,
            human_complete=prov.human_complete, notes=[*prov.notes, note], inputs=prov.inputs,
        )

    def _matched_depth(self, per_dataset: dict[str, int]) -> tuple[int, bool]:
        """The deepest content depth of the matched synthetic datasets (at least 1), and whether it is only a
        lower bound (a dataset that cannot be resolved, is being visited already, or is one of too many)."""
        depth, lower = 1, False
        ranked = sorted(per_dataset.items(), key=lambda kv: (-kv[1], kv[0]))
        if len(ranked) > MAX_MATCHED_DATASETS:
            lower = True
        for label in (ref for ref, _ in ranked[:MAX_MATCHED_DATASETS]):
            matched = _resolve(self.session, label)
            if matched is None or matched in self.visiting:
                lower = True
                continue
            graph = _Graph(self.session, matched, MAX_WALK_DEPTH, self.can_read, self.visiting)
            prov = graph.provenance(matched, "content")
            depth = max(depth, prov.max_depth or 1)
            lower = lower or prov.lower_bound
        return depth, lower

    def as_data(self, vid: int) -> Provenance:
        return self.provenance(vid, "generated" if self.kind(vid) == "model" else "content")

    def _component(self, edge: EdgeRow, training: bool) -> _Component | None:
        t, attrs = edge.type, edge.attributes
        pid = edge.parent_version_id
        label = self.nodes.parent_key(edge, self.can_read)  # a hidden version's sources are hidden with it
        generated = t == "generated_by"
        if training:
            if t not in TRAINING_EDGES | MODEL_PARENT_EDGES | TEACHER_EDGES:
                return None
        elif t not in DATA_EDGES:
            return None
        if pid is None:
            if generated or t in TEACHER_EDGES:
                prov = Provenance({1: 1.0}, lower_bound=True)
            elif attrs.get("human") is True and t not in MODEL_PARENT_EDGES:
                prov = Provenance.human()
            else:
                prov = Provenance.unknown()
        elif generated or t in TEACHER_EDGES:
            prov = self.provenance(pid, "generated")
        elif t in MODEL_PARENT_EDGES and training and self.kind(pid) == "model":
            prov = self.provenance(pid, "training")
        else:
            prov = self.as_data(pid)
        fraction = attrs.get("mixture_fraction")
        count = attrs.get("record_count")
        records_used = count if isinstance(count, int) else (self.records.get(pid) if pid is not None else None)
        if generated or t in TEACHER_EDGES:
            human: float | None = 0.0 if records_used is not None or prov.human_fraction <= EPS else None
        elif t in MODEL_PARENT_EDGES and training and pid is not None and self.kind(pid) == "model":
            human = prov.human_records if prov.human_complete else None
        elif records_used is not None:
            human = records_used * prov.human_fraction
        else:
            human = None
        return _Component(
            label=label, edge_type=t, prov=prov,
            fraction=float(fraction) if isinstance(fraction, int | float) and not isinstance(fraction, bool) else None,
            record_count=count if isinstance(count, int) and not isinstance(count, bool) else None,
            records_used=records_used, generated=generated or t in TEACHER_EDGES, human_records=human,
        )

    def _mix(self, vid: int, *, training: bool) -> Provenance:
        components = [c for e in self.by_child.get(vid, []) if (c := self._component(e, training)) is not None]
        what = "training data" if training else "data"
        if not components:
            return Provenance.unknown(f"{self.ref(vid)} declares no {what} lineage: provenance unknown")
        return mix(components, generated_takes_rest=not training)


def _resolve(session: Session, label: str) -> int | None:
    """The version id a fingerprint label (``namespace/name@version``) names, or None."""
    name, sep, version = label.rpartition("@")
    namespace, slash, artifact = name.partition("/")
    if not sep or not slash:
        return None
    return session.scalar(select(Version.id).join(Artifact, Artifact.id == Version.artifact_id).where(
        Artifact.namespace == namespace, Artifact.name == artifact, Version.version == version))


def mix(components: list[_Component], *, generated_takes_rest: bool) -> Provenance:
    """Weight the components (fractions, then record counts, then equal) and mix their distributions."""
    notes: list[str] = []
    fixed = [c for c in components if c.fraction is not None]
    total_fixed = sum(c.fraction or 0.0 for c in fixed)
    if total_fixed > 1 + 1e-6:
        return Provenance.unknown(f"mixture fractions sum to {total_fixed:.3f} > 1: provenance unknown (fail closed)")
    rest = [c for c in components if c.fraction is None]
    if generated_takes_rest and any(c.generated for c in rest):
        conditioning = [c for c in rest if not c.generated]
        if conditioning:
            notes.append(
                "inputs without a mixture_fraction other than generated_by ("
                + ", ".join(c.label for c in conditioning)
                + ") are taken as prompts/seeds: the generated data gets their share"
            )
        rest = [c for c in rest if c.generated]
    weights: dict[int, float] = {id(c): float(c.fraction or 0.0) for c in fixed}
    remainder = max(0.0, 1.0 - total_fixed)
    if rest and remainder > EPS:
        counts = [c.record_count for c in rest]
        if all(n is not None for n in counts) and sum(n or 0 for n in counts) > 0:
            total = sum(n or 0 for n in counts)
            for c in rest:
                weights[id(c)] = remainder * (c.record_count or 0) / total
            if len(rest) > 1:
                notes.append("weighted by record_count: " + ", ".join(c.label for c in rest))
        else:
            for c in rest:
                weights[id(c)] = remainder / len(rest)
            if len(rest) > 1:
                notes.append(
                    "equal weights (no mixture_fraction or record_count declared): " + ", ".join(c.label for c in rest)
                )
        remainder = 0.0
    dist: dict[Depth, float] = defaultdict(float)
    lower_bound = False
    for c in components:
        w = weights.get(id(c), 0.0)
        if w <= EPS:
            continue
        for depth, share in c.prov.dist.items():
            dist[depth] += w * share
        lower_bound = lower_bound or c.prov.lower_bound
        notes.extend(n for n in c.prov.notes if n not in notes)
    if remainder > EPS:
        dist[None] += remainder
        notes.append(f"{remainder:.1%} is the version's own data (fractions sum to {total_fixed:.3f}): unknown")
    known_human = [c.human_records for c in components if weights.get(id(c), 0.0) > EPS]
    complete = all(h is not None for h in known_human)
    prov = Provenance(
        {d: s for d, s in dist.items() if s > EPS},
        lower_bound=lower_bound,
        human_records=sum(h for h in known_human if h is not None),
        human_complete=complete,
        notes=notes,
        inputs=[
            {"edge": c.edge_type, "parent": c.label, "weight": round(weights.get(id(c), 0.0), 6),
             "synthetic_fraction": round(c.prov.synthetic_fraction, 6),
             "unknown_fraction": round(c.prov.unknown_fraction, 6)}
            for c in components
        ],
    )
    return prov


def provenance(
    session: Session, version: Version, *, depth: int = MAX_WALK_DEPTH, can_read: CanRead = everyone
) -> Provenance:
    """The version's provenance: a model's training data, any other kind's content."""
    graph = _Graph(session, version.id, depth, can_read)
    role = "training" if version.artifact.kind == "model" else "content"
    return graph.provenance(version.id, role)


def histogram(dist: dict[Depth, float]) -> dict[str, float]:
    known = sorted(d for d in dist if d is not None)
    out = {str(d): round(dist[d], 6) for d in known}
    if dist.get(None, 0.0) > EPS:
        out[UNKNOWN] = round(dist[None], 6)
    return out


def to_dict(prov: Provenance, kind: str) -> dict[str, Any]:
    """The JSON summary shown by the API, ``mir show`` and ``mir lineage --format json``."""
    return {
        "basis": "training data" if kind == "model" else "content",
        "synthetic_fraction": round(prov.synthetic_fraction, 6),
        "human_fraction": round(prov.human_fraction, 6),
        "unknown_fraction": round(prov.unknown_fraction, 6),
        "histogram": histogram(prov.dist),
        "max_depth": prov.max_depth,
        "depth_lower_bound": prov.lower_bound,
        "records": prov.records,
        "human_records": round(prov.human_records) if prov.human_records is not None else None,
        "human_records_complete": prov.human_complete,
        "inputs": prov.inputs,
        "notes": prov.notes,
    }


def lineage_summary(session: Session, version: Version, can_read: CanRead = everyone) -> dict[str, Any]:
    return to_dict(provenance(session, version, can_read=can_read), version.artifact.kind)


def _readable_label(label: str, can_read: CanRead) -> bool:
    """A fingerprint label names registry versions (``ns/name@v``, comma-joined for several generators) or
    external sources (``hf://...``, URLs), which are public names."""
    for part in label.split(", "):
        if "://" in part or part.startswith("hidden:"):
            continue
        if not can_read(part.split("/", 1)[0]):
            return False
    return True


def _redact(data: dict[str, Any], can_read: CanRead) -> dict[str, Any]:
    """Hide the names (and record positions) of synthetic datasets and generators the caller may not read."""
    hidden: set[str] = set()

    def tally(counts: dict[str, int]) -> dict[str, int]:
        out: dict[str, int] = {}
        for label, count in counts.items():
            shown = label if _readable_label(label, can_read) else "hidden"
            if shown == "hidden":
                hidden.add(label)
            out[shown] = out.get(shown, 0) + count
        return out

    data["per_dataset"] = tally(data["per_dataset"])
    data["per_generator"] = tally(data["per_generator"])
    examples = []
    for example in data["examples"]:
        example = dict(example)
        for key in ("dataset_ref", "generator_ref"):
            if not _readable_label(str(example.get(key, "")), can_read):
                hidden.add(str(example[key]))
                example[key] = "hidden"
                example["matched_ordinal"] = None
        examples.append(example)
    data["examples"] = examples
    findings = []
    for finding in data["findings"]:
        finding = dict(finding)
        message = str(finding.get("message", ""))
        for label in sorted(hidden, key=len, reverse=True):
            message = message.replace(label, "hidden")
        finding["message"] = message
        findings.append(finding)
    data["findings"] = findings
    return data


def _redact_semantic(section: Any, can_read: CanRead) -> dict[str, Any] | None:
    """The semantic layer's section (registry.synthetic.semantic) with unreadable dataset and generator names
    counted as ``hidden``; None when the layer did not run."""
    if not isinstance(section, dict):
        return None
    out = dict(section)
    for key in ("per_dataset", "per_generator"):
        counts: dict[str, int] = {}
        for label, count in (section.get(key) or {}).items():
            shown = label if _readable_label(str(label), can_read) else "hidden"
            counts[shown] = counts.get(shown, 0) + int(count)
        out[key] = counts
    return out


def fingerprint_summary(
    session: Session, version: Version, can_read: CanRead = everyone
) -> dict[str, Any] | None:
    """Layer 2 (and 3) results of the contamination step for a dataset; None for other kinds."""
    if version.artifact.kind != "dataset":
        return None
    row = session.get(ContaminationResult, version.id)
    if row is None:
        return {"status": "pending" if version.scan_status in (None, "pending") else "not analysed",
                "matched_fraction": None}
    report = dict(row.report or {})
    return _redact({
        "status": row.verdict,
        "matched_fraction": row.matched_fraction,
        "total_records": row.total_records,
        "indexed_records": row.indexed_records,
        "per_dataset": (report.get("fingerprint") or {}).get("per_dataset", {}),
        "per_generator": (report.get("fingerprint") or {}).get("per_generator", {}),
        "examples": (report.get("fingerprint") or {}).get("examples", [])[:5],
        "findings": report.get("findings", []),
        "text_field": report.get("text_field"),
        "error": report.get("error"),
        "statistical": row.statistical,
        "semantic": _redact_semantic(report.get("semantic"), can_read),
        "analysed_at": row.created_at.isoformat() if row.created_at else None,
    }, can_read)


def summary(session: Session, version: Version, can_read: CanRead = everyone) -> dict[str, Any]:
    """Everything the registry knows about a version's synthetic share: lineage, fingerprints, statistics.

    ``can_read`` hides the names of versions in namespaces the caller may not read; the registry's own
    checks use the default and see everything.
    """
    return {
        "kind": version.artifact.kind,
        "lineage": lineage_summary(session, version, can_read),
        "fingerprint": fingerprint_summary(session, version, can_read),
    }
