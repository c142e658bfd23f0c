"""Calibrating the zero-shot detector on a namespace's own labelled datasets (issue 17, defect 4).

A fraction estimate is only as good as its calibration: without a measured true-positive rate the flagged
share is a lower bound (a 50 % GPT-4 dataset read as 8-12 %). The registry already knows which of a
namespace's datasets are synthetic and which are human, so it calibrates on them:

* **synthetic**: committed dataset versions with a ``generated_by`` edge whose contamination step registered
  records as synthetic (``indexed_records > 0``). Only those registered records are examples: records marked
  human by ``MIR_SYNTHETIC_ORIGIN_FIELD`` and records found in the dataset's human parents never are.
* **human**: committed dataset versions without a ``generated_by`` edge whose lineage provenance is entirely
  human (depth 0 share 1: nothing generated anywhere upstream and no unknown share -- for example
  ``imported_from`` an external source declared ``"human": true``) and whose contamination step read records
  and matched none of them to registered synthetic data.

Both: in the scanned version's namespace only (a tenant's data never calibrates another's detector), never
the scanned version itself, and neither quarantined nor descending from a quarantined version. At most
``MAX_DATASETS`` versions per class (the newest) and ``PER_DATASET`` records of each (uniform, seeded by the
version id; the human sample is drawn from the first ``MAX_READ`` records).

Each labelled version's sample is scored once per model and kept in ``synthetic_calibration_samples``
(versions are immutable, so the scores are too); the calibration is refitted from those stored scores for
each scan, which costs nothing next to scoring, and a newly labelled dataset costs only its own sample. Its
key (a digest of the model key and the labelled versions) is stored with every estimate. With at least
``MIN_PER_CLASS`` scored texts of each class, the threshold is set at ``TARGET_FPR`` on the human texts and
the TPR measured on the synthetic ones; below that, the configured calibration file is used, else the
built-in one, and the stored result says which and why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from registry.artifacts.models import Artifact, Version
from registry.artifacts.versions import COMMITTED, version_label
from registry.core.blobstore import BlobTooLarge
from registry.core.context import RegistryContext
from registry.core.settings import Settings
from registry.lineage.models import LineageEdge
from registry.lineage.quarantine import quarantine_status
from registry.synthetic.detector import calibration_for
from registry.synthetic.models import CalibrationSample, ContaminationResult, SyntheticFingerprint
from registry.synthetic.provenance import DATA_EDGES, EPS, provenance
from scanners.contamination import Record, RecordFormatError, ZeroShotDetector
from scanners.contamination.detector import DEFAULT_SCORE, Calibration, TextScore, fit_calibration, reservoir_sample
from scanners.contamination.textnorm import record_hash, words

log = logging.getLogger("mir.contamination")

TARGET_FPR = 0.05
MIN_PER_CLASS = 30  # scored texts of each class before a namespace calibration is trusted
PER_DATASET = 40  # records sampled from each labelled version
MAX_DATASETS = 8  # labelled versions per class (the newest)
MAX_CANDIDATES = 4 * MAX_DATASETS  # versions examined per class (lineage walks are the cost)
MAX_READ = 50_000  # records read from a human dataset to draw its sample
SAMPLER = 1  # bump when the sampling rule changes: stored samples of the old rule are then not reused
HUMAN, SYNTHETIC = "human", "synthetic"

Local = Callable[[str], Path]  # a blob digest -> a readable file for the length of the step
# The contamination step's record reader (files, text field, origin field): the same reading, so ordinals agree.
ReadRecords = Callable[[list[tuple[str, Path]], str, str | None], Iterator[Record]]


@dataclass(frozen=True, slots=True)
class Labelled:
    """A labelled dataset version: its class, label and files (manifest path, blob digest)."""

    version_id: int
    role: str
    label: str
    files: list[tuple[str, str]]


@dataclass(slots=True)
class ChosenCalibration:
    """The calibration the step uses, where it came from (``namespace``, ``file`` or ``builtin``) and why."""

    calibration: Calibration
    source: str
    reason: str
    key: str | None = None
    labelled: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "reason": self.reason, "key": self.key, "labelled": self.labelled}

    @property
    def note(self) -> str:
        if self.source == "namespace":
            return "calibrated on this namespace's labelled datasets"
        return f"{self.source} calibration: {self.reason}"


# -- which versions are labelled -----------------------------------------------------------------------------


def _candidates(session: Session, namespace: str, exclude: int, *, generated: bool) -> list[Version]:
    """Versions that may be labelled, newest first; the human ones still need the provenance check. A dataset
    with no input edge at all is of unknown provenance, so it is not even a candidate."""
    gen, inp = aliased(LineageEdge), aliased(LineageEdge)
    has_generator = exists().where(gen.child_version_id == Version.id, gen.type == "generated_by")
    has_inputs = exists().where(inp.child_version_id == Version.id, inp.type.in_(sorted(DATA_EDGES)))
    query = (
        select(Version).join(Artifact, Artifact.id == Version.artifact_id)
        .join(ContaminationResult, ContaminationResult.version_id == Version.id)
        .where(Artifact.namespace == namespace, Artifact.kind == "dataset", Version.state == COMMITTED,
               Version.id != exclude, ContaminationResult.verdict != "error")
    )
    if generated:
        query = query.where(has_generator, ContaminationResult.indexed_records > 0)
    else:
        query = query.where(~has_generator, has_inputs, ContaminationResult.total_records > 0,
                            ContaminationResult.matched_fraction <= 0)
    return list(session.scalars(query.order_by(Version.id.desc()).limit(MAX_CANDIDATES)))


def labelled_versions(session: Session, namespace: str, exclude: int) -> list[Labelled]:
    """The namespace's labelled dataset versions (see the module's rules), newest first within each class."""
    out: list[Labelled] = []
    for role in (HUMAN, SYNTHETIC):
        taken = 0
        for version in _candidates(session, namespace, exclude, generated=role == SYNTHETIC):
            if taken >= MAX_DATASETS:
                break
            if role == HUMAN and provenance(session, version).human_fraction < 1.0 - EPS:
                continue
            if quarantine_status(session, version) is not None:
                continue
            out.append(Labelled(version.id, role, version_label(version), [(f.path, f.digest) for f in version.files]))
            taken += 1
    return out


# -- samples -------------------------------------------------------------------------------------------------


def model_key(detector: ZeroShotDetector, settings: Settings) -> str:
    """What a stored sample's scores depend on: the model's file, the token limit and how records are read."""
    source = detector.lm.source
    try:
        size = os.stat(source).st_size if os.path.isfile(source) else None
    except OSError:
        size = None
    parts = {"model": source, "size": size, "max_tokens": detector.max_tokens, "sampler": SAMPLER,
             "per_dataset": PER_DATASET, "max_read": MAX_READ, "text_field": settings.synthetic_text_field,
             "origin_field": settings.synthetic_origin_field}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _registered(session: Session, version_id: int) -> dict[int, bytes]:
    """``PER_DATASET`` of the records the step registered as synthetic: ordinal -> record hash."""
    ordinals = list(session.scalars(select(SyntheticFingerprint.ordinal).where(
        SyntheticFingerprint.version_id == version_id).order_by(SyntheticFingerprint.ordinal)))
    chosen = random.Random(version_id).sample(ordinals, min(PER_DATASET, len(ordinals)))  # noqa: S311 - sampling
    return {int(o): bytes(h) for o, h in session.execute(
        select(SyntheticFingerprint.ordinal, SyntheticFingerprint.record_hash).where(
            SyntheticFingerprint.version_id == version_id, SyntheticFingerprint.ordinal.in_(sorted(chosen))))}


def _synthetic_texts(records: Iterator[Record], chosen: dict[int, bytes]) -> list[str]:
    """The chosen registered records, found again by ordinal and checked against their stored hash."""
    texts: list[str] = []
    last = max(chosen, default=-1)
    for position, record in enumerate(records):
        if position > last:
            break
        if position in chosen and record_hash(words(record.text)) == chosen[position]:
            texts.append(record.text)
    return texts


def _human_texts(records: Iterator[Record], seed: int) -> list[str]:
    """``PER_DATASET`` records drawn uniformly from the first ``MAX_READ`` of a human dataset."""
    def head() -> Iterator[Record]:
        for position, record in enumerate(records):
            if position >= MAX_READ:
                return
            yield record

    sample, _ = reservoir_sample(head(), PER_DATASET, seed=seed)
    return [r.text if isinstance(r, Record) else r for r in sample]


def sample_texts(ctx: RegistryContext, item: Labelled, local: Local, read: ReadRecords) -> list[str]:
    """The texts of a labelled version's calibration sample (RecordFormatError, OSError when unreadable)."""
    settings = ctx.settings
    files = [(path, local(digest)) for path, digest in item.files]
    if item.role == SYNTHETIC:
        with ctx.transaction() as s:
            chosen = _registered(s, item.version_id)
        # The step read a generated_by dataset with the origin field set: read it the same way.
        return _synthetic_texts(read(files, settings.synthetic_text_field, settings.synthetic_origin_field), chosen)
    return _human_texts(read(files, settings.synthetic_text_field, None), item.version_id)


def _score_sample(ctx: RegistryContext, detector: ZeroShotDetector, item: Labelled, key: str, local: Local,
                  read: ReadRecords) -> list[list[float]] | None:
    """Draw, score and store one labelled version's sample; None when its blobs cannot be read just now."""
    error: str | None = None
    texts: list[str] = []
    try:
        texts = sample_texts(ctx, item, local, read)
    except RecordFormatError as exc:  # the content's fault: the same every time, so remembered
        error = f"records unreadable: {exc.reason}"[:400]
    except BlobTooLarge as exc:  # so is a blob over the scan spool's limit
        error = str(exc)[:400]
    except OSError as exc:  # the store's: try again at the next scan
        log.warning("calibration sample of %s not read: %s", item.label, exc)
        return None
    rows = [t.to_row() for t in detector.score_texts(texts)] if texts else []
    rows = [r for r in rows if r[0] > 0 and all(math.isfinite(x) for x in r)]
    try:
        with ctx.transaction() as s:
            s.add(CalibrationSample(version_id=item.version_id, role=item.role, model_key=key, sampled=len(texts),
                                    scores=rows, error=error))
    except IntegrityError:
        pass  # another worker stored the same sample (same seed, same scores) first
    return rows


# -- the calibration -------------------------------------------------------------------------------------------


def choose_calibration(ctx: RegistryContext, detector: ZeroShotDetector, version_id: int, local: Local,
                       read: ReadRecords, *, score: str = DEFAULT_SCORE) -> ChosenCalibration:
    """The namespace's own calibration when it has ``MIN_PER_CLASS`` labelled texts of each class, else the
    configured file's, else the built-in one (``ModelLoadError`` when the configured file is unusable)."""
    key_model = model_key(detector, ctx.settings)
    with ctx.transaction() as s:
        version = s.get(Version, version_id)
        assert version is not None
        labelled = labelled_versions(s, version.artifact.namespace, version_id)
        stored = {(row.version_id, row.role): row.scores for row in s.scalars(select(CalibrationSample).where(
            CalibrationSample.model_key == key_model,
            CalibrationSample.version_id.in_([item.version_id for item in labelled])))}
    scores: dict[str, list[TextScore]] = {HUMAN: [], SYNTHETIC: []}
    used: dict[str, list[str]] = {HUMAN: [], SYNTHETIC: []}
    newly = 0
    for item in labelled:
        rows = stored.get((item.version_id, item.role))
        if rows is None:
            rows = _score_sample(ctx, detector, item, key_model, local, read)
            newly += 1
            if rows is None:
                continue
        if rows:
            scores[item.role].extend(TextScore.from_row(r) for r in rows)
            used[item.role].append(item.label)
    key = hashlib.sha256(json.dumps([key_model, sorted((i.version_id, i.role) for i in labelled)]).encode()
                         ).hexdigest()[:32]
    summary: dict[str, Any] = {r: {"versions": used[r], "texts": len(scores[r])} for r in (HUMAN, SYNTHETIC)}
    summary["scored_now"] = newly
    n_h, n_s = len(scores[HUMAN]), len(scores[SYNTHETIC])
    if n_h >= MIN_PER_CLASS and n_s >= MIN_PER_CLASS:
        human, synthetic = (np.array([t.feature(score) for t in scores[r]]) for r in (HUMAN, SYNTHETIC))
        calibration = fit_calibration(human, synthetic, score=score, target_fpr=TARGET_FPR, model=detector.lm.source)
        reason = (f"{n_h} human texts from {len(used[HUMAN])} and {n_s} synthetic texts from {len(used[SYNTHETIC])} "
                  f"labelled datasets of this namespace; threshold at {TARGET_FPR:.0%} FPR")
        return ChosenCalibration(calibration, "namespace", reason, key, summary)
    short = (f"this namespace has {n_h} human and {n_s} synthetic labelled texts; a namespace calibration needs "
             f"{MIN_PER_CLASS} of each")
    source = "file" if ctx.settings.synthetic_detector_calibration is not None else "builtin"
    return ChosenCalibration(calibration_for(ctx.settings, detector), source, short, key, summary)
