"""The optional semantic layer of the contamination step: paraphrases and heavy edits of registered synthetic data.

Off unless ``MIR_SYNTHETIC_SEMANTIC=true`` (and the ``semantic`` extra is installed: wordllama's packaged
embedding files and usearch; ``scanners.contamination.semantic`` says why those). Called once by
``registry.synthetic.contamination`` after its fingerprint pass, in the scan worker:

1. The registered vectors of the version's match scope are loaded from ``synthetic_embeddings`` into an
   in-memory ``SemanticIndex`` -- the version's own namespace, or every namespace with
   ``MIR_SYNTHETIC_MATCH_SCOPE=registry``, exactly as the fingerprint layer scopes its index; the version's
   own rows and rows of another embedding model are left out.
2. The version's records are read again and embedded in bounded batches; a record whose most similar
   registered record reaches ``MIR_SYNTHETIC_SEMANTIC_THRESHOLD`` (cosine) is a semantic match. The counts
   go into the result's ``semantic`` section, apart from the fingerprint counts, with the threshold and the
   false-match rate measured on human text at it. When more than the namespace policy's
   ``max_synthetic_fraction`` matches, the verdict becomes ``suspicious`` -- never ``malicious`` or
   ``error``: a semantic match is evidence, not proof, and it does not raise the lineage floor (only
   fingerprint matches do).
3. For a ``generated_by`` dataset, the vectors of exactly the records the fingerprint layer registered as
   synthetic (not those found in its human parents, not those marked human) are stored as float16, 512
   bytes a record, in the same transaction as the result.

Scale: the scope's vectors are loaded into one index per job (about 0.7 KB a record with the HNSW graph);
below ``scanners.contamination.semantic.EXACT_BELOW`` records they are compared exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from registry.artifacts.models import Artifact, Version
from registry.artifacts.versions import version_label
from registry.core.context import RegistryContext
from registry.synthetic.models import SyntheticEmbedding
from scanners.contamination import FingerprintIndex, Record
from scanners.contamination.semantic import (
    DIM,
    Embedder,
    SemanticIndex,
    SemanticReport,
    SemanticUnavailableError,
    embedded_batches,
)
from scanners.report import Report

log = logging.getLogger("mir.contamination.semantic")

_LOAD_CHUNK = 5000
_INSERT_CHUNK = 1000
VECTOR_DTYPE = "<f2"

_EMBEDDER: Embedder | None = None


def embedder() -> Embedder:
    """The embedding model, loaded once per worker process (about 50 MB, a quarter of a second)."""
    global _EMBEDDER
    if _EMBEDDER is None:
        _EMBEDDER = Embedder.load()
    return _EMBEDDER


@dataclass(slots=True)
class Outcome:
    """What ``scan`` leaves for the result's transaction: the vectors of the records to register, if any."""

    model_key: str
    register: bool
    generator_ref: str = ""
    ordinals: list[NDArray[np.int64]] = field(default_factory=list)
    vectors: list[NDArray[np.float16]] = field(default_factory=list)


def load_index(session: Session, model_key: str, *, exclude_version: int | None = None,
               namespace: str | None = None) -> SemanticIndex:
    """The registered vectors of ``namespace`` (None: every namespace) made by ``model_key``, except
    ``exclude_version``'s, in a fresh index."""
    index = SemanticIndex()
    labels: dict[int, str] = {}
    query = (select(SyntheticEmbedding.version_id, SyntheticEmbedding.ordinal, SyntheticEmbedding.generator_ref,
                    SyntheticEmbedding.vector)
             .where(SyntheticEmbedding.model_key == model_key)
             .order_by(SyntheticEmbedding.id).execution_options(yield_per=_LOAD_CHUNK))
    if exclude_version is not None:
        query = query.where(SyntheticEmbedding.version_id != exclude_version)
    if namespace is not None:
        query = query.where(SyntheticEmbedding.version_id.in_(
            select(Version.id).join(Artifact, Artifact.id == Version.artifact_id).where(Artifact.namespace == namespace)
        ))
    for chunk in session.execute(query).partitions(_LOAD_CHUNK):
        missing = {r.version_id for r in chunk} - set(labels)
        if missing:
            for version in session.scalars(select(Version).where(Version.id.in_(missing))):
                labels[version.id] = version_label(version)
        rows = [r for r in chunk if len(r.vector) == DIM * 2]  # a torn row is skipped, never misread
        vectors = np.frombuffer(b"".join(r.vector for r in rows), dtype=VECTOR_DTYPE).reshape(len(rows), DIM)
        index.add(vectors, [labels[r.version_id] for r in rows], [r.generator_ref for r in rows],
                  [r.ordinal for r in rows])
    return index


def scan(ctx: RegistryContext, version_id: int, records: Iterable[Record], own: FingerprintIndex | None,
         limit: float | None, report: Report, extra: dict[str, Any]) -> Outcome | None:
    """Match the version's records semantically (and collect the vectors to register when ``own``, the
    fingerprint layer's index of this version's registered records, is given); adds the ``semantic``
    section to ``extra`` and its finding to ``report``. None when the layer is off or cannot run."""
    settings = ctx.settings
    if not settings.synthetic_semantic:
        return None
    try:
        model = embedder()
        with ctx.transaction() as s:
            version = s.get(Version, version_id)
            assert version is not None
            scope = version.artifact.namespace if settings.synthetic_match_scope == "namespace" else None
            index = load_index(s, model.key, exclude_version=version_id, namespace=scope)
    except SemanticUnavailableError as exc:
        log.warning("semantic layer unavailable: %s", exc)
        extra["semantic"] = {"error": str(exc)}
        return None
    registered = set(own.arrays()["ordinals"].tolist()) if own is not None else set()
    sources = own.sources if own is not None else []
    outcome = Outcome(model_key=model.key, register=own is not None,
                      generator_ref=sources[0].generator_ref if sources else "")
    matched = SemanticReport(threshold=settings.synthetic_semantic_threshold, registered_vectors=len(index))
    for batch in embedded_batches(model, records):
        matched.total_records += len(batch.items)
        matched.count(index, index.nearest(batch.vectors))
        keep = [i for i, position in enumerate(batch.positions) if position in registered]
        if keep:
            outcome.ordinals.append(np.asarray([batch.positions[i] for i in keep], dtype=np.int64))
            outcome.vectors.append(batch.vectors[keep].astype(np.float16))
    section = matched.to_dict()
    if outcome.register:
        section["registered"] = sum(len(o) for o in outcome.ordinals)
    extra["semantic"] = section
    for finding in matched.to_report(max_fraction=1.0 if limit is None else limit).findings:
        report.add(finding)
    return outcome


def store(session: Session, version_id: int, outcome: Outcome | None) -> int | None:
    """Replace the version's registered vectors with the outcome's (a ``generated_by`` dataset); the count."""
    if outcome is None or not outcome.register:
        return None
    session.execute(delete(SyntheticEmbedding).where(SyntheticEmbedding.version_id == version_id))
    ordinals = np.concatenate(outcome.ordinals) if outcome.ordinals else np.empty(0, dtype=np.int64)
    vectors = np.concatenate(outcome.vectors) if outcome.vectors else np.empty((0, DIM), dtype=np.float16)
    for start in range(0, len(ordinals), _INSERT_CHUNK):
        stop = min(len(ordinals), start + _INSERT_CHUNK)
        session.execute(insert(SyntheticEmbedding), [
            {"version_id": version_id, "ordinal": int(ordinals[i]), "generator_ref": outcome.generator_ref,
             "model_key": outcome.model_key, "vector": vectors[i].astype(VECTOR_DTYPE).tobytes()}
            for i in range(start, stop)
        ])
    return len(ordinals)
