"""The fingerprint index of datasets registered as synthetic, and matching uploads against it.

Layer 2 of synthetic-data contamination detection: every record of a dataset
registered as synthetic is fingerprinted on commit (``add_dataset``); every
upload is matched against the index (``match_dataset``), which reports the
matched fraction and which synthetic datasets and generating models it came
from. A record matches an indexed one when it is an exact copy (after
normalisation), a near copy (estimated Jaccard), or when most of its passages
are contained in it (``scanners.contamination.passages``: truncated and
re-chunked copies). The index holds no text, only per-record hashes, MinHash
signatures, sampled shingle hashes and source labels, so it can be persisted
without pickle (:mod:`scanners.contamination.store`)
or kept by the registry in SQL rows and fed back through ``add_fingerprints``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

import numpy as np
from numpy.typing import NDArray

from scanners.contamination.banding import BandIndex
from scanners.contamination.errors import DuplicateDatasetError
from scanners.contamination.fingerprint import (
    HASH_BYTES,
    SIGNATURE_DTYPE,
    Fingerprint,
    FingerprintConfig,
    Fingerprinter,
)
from scanners.contamination.passages import Hashes, PassageConfig, PassageHit, PassageIndex
from scanners.contamination.records import Record
from scanners.contamination.results import EXAMPLE_CHARS, ContaminationReport, Match, MatchExample, Source

DEFAULT_BATCH = 2048
DEFAULT_PASSAGES = PassageConfig()
DEFAULT_MAX_BUCKET = 256
DEFAULT_MAX_EXAMPLES = 20
_PAIR_CHUNK = 65536


@dataclass(frozen=True, slots=True)
class AddResult:
    """What ``add_dataset`` indexed: records fingerprinted, and records skipped as too short."""

    indexed: int
    too_short: int


class _Column:
    """An append-only numpy array with amortised growth (one per per-record attribute)."""

    def __init__(self, dtype: type[np.generic], width: int | None = None) -> None:
        shape = (1024,) if width is None else (1024, width)
        self._data: NDArray[np.generic] = np.empty(shape, dtype=dtype)
        self._n = 0

    def extend(self, values: NDArray[np.generic]) -> None:
        need = self._n + values.shape[0]
        if need > self._data.shape[0]:
            capacity = max(need, 2 * self._data.shape[0])
            grown = np.empty((capacity, *self._data.shape[1:]), dtype=self._data.dtype)
            grown[: self._n] = self._data[: self._n]
            self._data = grown
        self._data[self._n : need] = values
        self._n = need

    def truncate(self, size: int) -> None:
        self._n = min(self._n, size)

    @property
    def view(self) -> NDArray[np.generic]:
        return self._data[: self._n]


class FingerprintIndex:
    """Exact hashes and MinHash signatures of synthetic records, with their dataset and generator labels."""

    def __init__(
        self,
        config: FingerprintConfig | None = None,
        permutations: NDArray[np.uint32] | None = None,
        passages: PassageConfig | None = DEFAULT_PASSAGES,
    ):
        """``passages=None`` turns passage containment off (record-level MinHash and exact hashes only)."""
        self.config = config or FingerprintConfig()
        self.fingerprinter = Fingerprinter(self.config, permutations, passages)
        self._passages = PassageIndex(passages) if passages is not None else None
        p = self.config.num_perm
        self._signatures = _Column(SIGNATURE_DTYPE, p)
        self._hashes = _Column(np.uint8, HASH_BYTES)
        self._source_ids = _Column(np.uint32)
        self._ordinals = _Column(np.int64)
        self._sources: list[Source] = []
        self._source_lookup: dict[Source, int] = {}
        self._datasets: set[str] = set()
        self._bands = BandIndex(self.config.bands, self.config.rows)
        self._hash_sorted = np.empty(0, dtype=np.uint64)
        self._hash_order = np.empty(0, dtype=np.int64)
        self._hash_sorted_n = 0

    # ----------------------------------------------------------------- contents

    def __len__(self) -> int:
        return len(self._bands)

    @property
    def sources(self) -> list[Source]:
        """Distinct (dataset, generator) labels, indexed by the per-record source id."""
        return list(self._sources)

    @property
    def dataset_refs(self) -> set[str]:
        return set(self._datasets)

    def arrays(self) -> dict[str, NDArray[np.generic]]:
        """Read-only views of the per-record columns (for persistence, or for the registry's SQL rows)."""
        out = {
            "signatures": self._signatures.view,
            "record_hashes": self._hashes.view,
            "source_ids": self._source_ids.view,
            "ordinals": self._ordinals.view,
        }
        for array in out.values():
            array.flags.writeable = False
        return out

    # ----------------------------------------------------------------- adding

    def add_dataset(
        self,
        records: Iterable[Record | str],
        dataset_ref: str,
        generator_ref: str,
        *,
        batch_size: int = DEFAULT_BATCH,
    ) -> AddResult:
        """Fingerprint every record of a synthetic dataset, streaming in batches.

        ``ordinal`` of each record is its 0-based position in ``records`` (short
        records included), so an example can point back at the original record.
        Adding a ``dataset_ref`` already in the index is refused: its records would
        count twice in every attribution. All or nothing: if reading the records
        fails part way (a malformed file), the records already taken are removed
        again, so a retry after fixing the data does not double them.
        """
        if dataset_ref in self._datasets:
            raise DuplicateDatasetError(f"dataset {dataset_ref!r} is already in the fingerprint index")
        _check_ref("dataset_ref", dataset_ref)
        _check_ref("generator_ref", generator_ref)
        size, n_sources = len(self), len(self._sources)
        try:
            result = self._add_records(records, dataset_ref, generator_ref, batch_size)
        except BaseException:
            self._rollback(size, n_sources)
            raise
        self._datasets.add(dataset_ref)
        return result

    def _rollback(self, size: int, n_sources: int) -> None:
        for column in (self._signatures, self._hashes, self._source_ids, self._ordinals):
            column.truncate(size)
        self._bands.truncate(size)
        if self._passages is not None:
            self._passages.drop_from(size)
        for source in self._sources[n_sources:]:
            del self._source_lookup[source]
        del self._sources[n_sources:]

    def _add_records(
        self, records: Iterable[Record | str], dataset_ref: str, generator_ref: str, batch_size: int
    ) -> AddResult:
        indexed = too_short = 0
        for batch in self.fingerprint_batches(records, batch_size=batch_size):
            too_short += len(batch.items) - len(batch.fingerprints)
            indexed += self.add_batch(batch, dataset_ref, generator_ref)
        return AddResult(indexed=indexed, too_short=too_short)

    def add_fingerprints(
        self,
        record_hashes: NDArray[np.uint8],
        signatures: NDArray[np.uint32],
        *,
        dataset_ref: str | Sequence[str],
        generator_ref: str | Sequence[str],
        ordinals: NDArray[np.int64] | Sequence[int] | None = None,
        samples: Sequence[Hashes | None] | None = None,
    ) -> None:
        """Add precomputed fingerprints: the plain-array entry point for an index kept in SQL rows.

        ``record_hashes`` is (n, 32) uint8, ``signatures`` (n, num_perm) uint32
        made with this index's permutations; the labels are one string for all
        records or one per record. ``samples`` are the records' passage samples
        (``Fingerprint.sample``; None for a record stored without one, which then
        matches at record level only). Unlike ``add_dataset`` this may be called many
        times for one dataset (rebuilding from storage in chunks).
        """
        hashes = np.asarray(record_hashes)
        sigs = np.asarray(signatures)
        n = sigs.shape[0] if sigs.ndim == 2 else -1
        if sigs.ndim != 2 or sigs.shape[1] != self.config.num_perm or sigs.dtype != SIGNATURE_DTYPE:
            raise ValueError(
                f"signatures must be uint32 of shape (n, {self.config.num_perm}), not {sigs.dtype} {sigs.shape}"
            )
        if hashes.shape != (n, HASH_BYTES) or hashes.dtype != np.uint8:
            raise ValueError(
                f"record_hashes must be uint8 of shape ({n}, {HASH_BYTES}), not {hashes.dtype} {hashes.shape}"
            )
        ords = np.zeros(n, dtype=np.int64) if ordinals is None else np.asarray(ordinals, dtype=np.int64)
        if ords.shape != (n,) or (n and int(ords.min()) < 0):
            raise ValueError(f"ordinals must be {n} non-negative integers")
        if samples is not None and len(samples) != n:
            raise ValueError(f"samples has {len(samples)} entries for {n} records")
        datasets = _labels("dataset_ref", dataset_ref, n)
        generators = _labels("generator_ref", generator_ref, n)
        source_ids = np.fromiter(
            (self._source_id(Source(d, g)) for d, g in zip(datasets, generators, strict=True)), dtype=np.uint32, count=n
        )
        self._signatures.extend(sigs)
        self._hashes.extend(hashes)
        self._source_ids.extend(source_ids)
        first = len(self)
        self._ordinals.extend(ords)
        self._bands.add(sigs)
        if samples is not None and self._passages is not None:
            kept = [(first + i, h) for i, h in enumerate(samples) if h is not None]
            self._passages.add([i for i, _ in kept], [_check_sample(h) for _, h in kept])

    def _source_id(self, source: Source) -> int:
        sid = self._source_lookup.get(source)
        if sid is None:
            sid = len(self._sources)
            self._sources.append(source)
            self._source_lookup[source] = sid
        return sid

    def _restore_sources(self, sources: Sequence[Source]) -> None:
        """Used by ``load``: source ids on disk refer to this exact order."""
        for source in sources:
            if source in self._source_lookup:
                raise ValueError(f"duplicate source {source}")
            self._source_id(source)

    def _add_restored(
        self,
        record_hashes: NDArray[np.uint8],
        signatures: NDArray[np.uint32],
        source_ids: NDArray[np.uint32],
        ordinals: NDArray[np.int64],
        samples: Sequence[Hashes] | None = None,
    ) -> None:
        """Used by ``load`` with arrays it has already validated against the restored sources."""
        first = len(self)
        self._signatures.extend(signatures)
        self._hashes.extend(record_hashes)
        self._source_ids.extend(source_ids)
        self._ordinals.extend(ordinals)
        self._bands.add(signatures)
        if samples is not None and self._passages is not None:
            self._passages.add(range(first, first + len(samples)), samples)

    def mark_dataset(self, dataset_ref: str) -> None:
        """Record that a dataset is complete in the index (``add_fingerprints`` callers; ``load`` does it)."""
        self._datasets.add(dataset_ref)

    # ----------------------------------------------------------------- querying

    def query(self, text: str) -> list[Match]:
        """Indexed records that ``text`` copies exactly or nearly (estimated Jaccard >= match_threshold), or
        whose text holds most of its passages (passage containment)."""
        batch = next(self.fingerprint_batches([text]))
        found = self.match_batch(batch)
        return found[0] if found else []

    def query_fingerprints(
        self,
        record_hashes: NDArray[np.uint8],
        signatures: NDArray[np.uint32],
        *,
        max_bucket: int = DEFAULT_MAX_BUCKET,
    ) -> list[list[Match]]:
        """Matches for a batch of fingerprints, best first (exact copies, then by similarity)."""
        q = signatures.shape[0]
        results: list[list[Match]] = [[] for _ in range(q)]
        if q == 0 or len(self) == 0:
            return results
        all_sigs = self._signatures.view
        all_hashes = self._hashes.view
        qidx, rids = self._bands.candidates(signatures, max_bucket)
        exact_q, exact_r = self._exact_candidates(record_hashes, max_bucket)
        if exact_q.size:
            pair = np.unique(
                np.concatenate([qidx, exact_q]) * np.int64(len(self)) + np.concatenate([rids, exact_r])
            )
            qidx, rids = pair // len(self), pair % len(self)
        threshold = self.config.match_threshold
        for lo in range(0, qidx.size, _PAIR_CHUNK):
            cq, cr = qidx[lo : lo + _PAIR_CHUNK], rids[lo : lo + _PAIR_CHUNK]
            sims = np.mean(all_sigs[cr] == signatures[cq], axis=1)
            exact = np.all(all_hashes[cr] == record_hashes[cq], axis=1)
            keep = (sims >= threshold) | exact
            for qi, ri, sim, ex in zip(
                cq[keep].tolist(), cr[keep].tolist(), sims[keep].tolist(), exact[keep].tolist(), strict=True
            ):
                results[qi].append(self._match(ri, 1.0 if ex else sim, ex))
        for matches in results:
            matches.sort(key=lambda m: (not m.exact, -m.similarity, m.record_id))
        return results

    def _match(self, record_id: int, similarity: float, exact: bool) -> Match:
        return Match(
            record_id=record_id,
            source=self._sources[int(self._source_ids.view[record_id])],
            ordinal=int(self._ordinals.view[record_id]),
            similarity=float(similarity),
            exact=exact,
        )

    def _exact_candidates(
        self, record_hashes: NDArray[np.uint8], max_bucket: int
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """(query, record) pairs whose hashes share the 64-bit prefix (confirmed on all 32 bytes later)."""
        n = len(self)
        if self._hash_sorted_n != n:
            prefixes = _prefix64(self._hashes.view)  # type: ignore[arg-type]
            self._hash_order = np.argsort(prefixes, kind="stable").astype(np.int64)
            self._hash_sorted = prefixes[self._hash_order]
            self._hash_sorted_n = n
        qp = _prefix64(record_hashes)
        lo = np.searchsorted(self._hash_sorted, qp, side="left")
        hi = np.searchsorted(self._hash_sorted, qp, side="right")
        counts = np.minimum(hi - lo, max_bucket)
        total = int(counts.sum())
        qidx = np.repeat(np.arange(qp.size, dtype=np.int64), counts)
        starts = np.repeat(lo - (np.cumsum(counts) - counts), counts)
        return qidx, self._hash_order[starts + np.arange(total, dtype=np.int64)]

    def match_dataset(
        self,
        records: Iterable[Record | str],
        *,
        max_examples: int = DEFAULT_MAX_EXAMPLES,
        batch_size: int = DEFAULT_BATCH,
    ) -> ContaminationReport:
        """Match every record of an upload against the index, streaming; the report never holds the dataset."""
        report = ContaminationReport()
        for batch in self.fingerprint_batches(records, batch_size=batch_size):
            self.account(report, batch, self.match_batch(batch), max_examples=max_examples)
        return report

    def iter_matches(self, records: Iterable[Record | str], *, batch_size: int = DEFAULT_BATCH) -> Iterator[
        tuple[Record | str, list[Match]]
    ]:
        """Every record with its matches (empty when none or too short), for callers that want all detail."""
        for batch in self.fingerprint_batches(records, batch_size=batch_size):
            by_pos = dict(zip(batch.positions, self.match_batch(batch), strict=True))
            for offset, item in enumerate(batch.items):
                yield item, by_pos.get(batch.start + offset, [])

    # ----------------------------------------------------------------- one pass: fingerprint once, use twice

    def fingerprint_batches(
        self, records: Iterable[Record | str], *, batch_size: int = DEFAULT_BATCH
    ) -> Iterator[FingerprintBatch]:
        """The records fingerprinted once, in batches, with this index's parameters.

        Why: a caller that both matches an upload and indexes it (a ``generated_by`` dataset in the registry)
        must not pay for fingerprinting twice; any index with the same config and permutations accepts these
        batches in ``match_batch`` and ``add_batch``.
        """
        for start, items in _batches(records, batch_size):
            positions: list[int] = []
            fps: list[Fingerprint] = []
            for offset, item in enumerate(items):
                fp = self.fingerprinter.fingerprint(_text(item))
                if fp is not None:
                    positions.append(start + offset)
                    fps.append(fp)
            yield FingerprintBatch(start, items, positions, fps)

    def match_batch(self, batch: FingerprintBatch) -> list[list[Match]]:
        """Matches of each fingerprinted record of ``batch`` (aligned with ``batch.fingerprints``)."""
        self._check_compatible(batch)
        if not batch.fingerprints:
            return []
        found = self.query_fingerprints(batch.record_hashes(), batch.signatures())
        if self._passages is not None and len(self._passages):
            rest = [i for i, matches in enumerate(found) if not matches and batch.fingerprints[i].passages]
            hits = self._passages.record_matches([batch.fingerprints[i].passages for i in rest])
            for i, passage_hits in zip(rest, hits, strict=True):
                found[i] = self._contained(passage_hits, len(batch.fingerprints[i].passages))
        return found

    def _contained(self, hits: list[PassageHit], passages: int) -> list[Match]:
        """Matches from contained passages: one per registered record, best (most passages) first; the
        similarity is the share of the query's passages that record contains."""
        per_record: dict[int, int] = {}
        for hit in hits:
            per_record[hit.record_id] = per_record.get(hit.record_id, 0) + 1
        ranked = sorted(per_record.items(), key=lambda kv: (-kv[1], kv[0]))
        return [
            Match(record_id=rid, source=self._sources[int(self._source_ids.view[rid])],
                  ordinal=int(self._ordinals.view[rid]), similarity=count / passages, exact=False, contained=True)
            for rid, count in ranked
        ]

    def passage_samples(self) -> list[Hashes]:
        """Each record's passage sample in record order (empty where none): for persistence beside arrays()."""
        if self._passages is None:
            return [np.empty(0, dtype=np.uint64) for _ in range(len(self))]
        return self._passages.samples(len(self))

    def account(
        self,
        report: ContaminationReport,
        batch: FingerprintBatch,
        matches: list[list[Match]],
        *,
        max_examples: int = DEFAULT_MAX_EXAMPLES,
    ) -> None:
        """Add one batch and its ``match_batch`` result to a dataset's report."""
        report.total_records += len(batch.items)
        report.scored_records += len(batch.fingerprints)
        for position, found in zip(batch.positions, matches, strict=True):
            if found:
                _account(report, position, batch.items[position - batch.start], found, max_examples)

    def add_batch(
        self,
        batch: FingerprintBatch,
        dataset_ref: str,
        generator_ref: str,
        *,
        keep: Sequence[bool] | None = None,
    ) -> int:
        """Index the fingerprinted records of ``batch`` (only those ``keep`` marks, aligned with
        ``batch.fingerprints``); returns how many. Like ``add_fingerprints``, callable many times per dataset;
        call ``mark_dataset`` when it is complete."""
        self._check_compatible(batch)
        _check_ref("dataset_ref", dataset_ref)
        _check_ref("generator_ref", generator_ref)
        if keep is not None and len(keep) != len(batch.fingerprints):
            raise ValueError(f"keep has {len(keep)} flags for {len(batch.fingerprints)} fingerprints")
        chosen = [i for i in range(len(batch.fingerprints)) if keep is None or keep[i]]
        if not chosen:
            return 0
        fps = [batch.fingerprints[i] for i in chosen]
        self.add_fingerprints(
            _hash_array([f.record_hash for f in fps]),
            np.stack([f.signature for f in fps]),
            dataset_ref=dataset_ref,
            generator_ref=generator_ref,
            ordinals=np.asarray([batch.positions[i] for i in chosen], dtype=np.int64),
            samples=[f.sample for f in fps],
        )
        return len(chosen)

    def _check_compatible(self, batch: FingerprintBatch) -> None:
        if batch.fingerprints and batch.fingerprints[0].signature.shape != (self.config.num_perm,):
            raise ValueError("the batch was fingerprinted with another number of permutations")


@dataclass(frozen=True, slots=True)
class FingerprintBatch:
    """Records fingerprinted once (``FingerprintIndex.fingerprint_batches``): ``items`` are the batch's records
    from position ``start``; ``positions`` and ``fingerprints`` list those long enough to fingerprint."""

    start: int
    items: list[Record | str]
    positions: list[int]
    fingerprints: list[Fingerprint]

    def record_hashes(self) -> NDArray[np.uint8]:
        return _hash_array([f.record_hash for f in self.fingerprints])

    def signatures(self) -> NDArray[np.uint32]:
        return np.stack([f.signature for f in self.fingerprints])


def _account(
    report: ContaminationReport, position: int, item: Record | str, found: list[Match], max_examples: int
) -> None:
    report.matched_records += 1
    if any(m.exact for m in found):
        report.exact_records += 1
    sources = {m.source for m in found}
    for source in sources:
        report.per_source[source] = report.per_source.get(source, 0) + 1
    for dataset in {s.dataset_ref for s in sources}:
        report.per_dataset[dataset] = report.per_dataset.get(dataset, 0) + 1
    for generator in {s.generator_ref for s in sources}:
        report.per_generator[generator] = report.per_generator.get(generator, 0) + 1
    if len(report.examples) < max_examples:
        best = found[0]
        text = _text(item)
        location = item.location if isinstance(item, Record) else f"record {position}"
        report.examples.append(
            MatchExample(
                location=location,
                text=text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "\u2026",
                dataset_ref=best.source.dataset_ref,
                generator_ref=best.source.generator_ref,
                matched_ordinal=best.ordinal,
                similarity=best.similarity,
                exact=best.exact,
                contained=best.contained,
            )
        )


def _batches(items: Iterable[Record | str], size: int) -> Iterator[tuple[int, list[Record | str]]]:
    if size < 1:
        raise ValueError("batch_size must be positive")
    iterator = iter(items)
    start = 0
    while batch := list(islice(iterator, size)):
        yield start, batch
        start += len(batch)


def _text(item: Record | str) -> str:
    if isinstance(item, Record):
        return item.text
    if isinstance(item, str):
        return item
    raise TypeError(f"records must be Record or str, not {type(item).__name__}")


def _hash_array(hashes: list[bytes]) -> NDArray[np.uint8]:
    return np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(len(hashes), HASH_BYTES)


def _prefix64(hashes: NDArray[np.uint8]) -> NDArray[np.uint64]:
    return np.ascontiguousarray(hashes[:, :8]).view(">u8").reshape(-1).astype(np.uint64)


def _check_sample(sample: Hashes) -> Hashes:
    array = np.asarray(sample)
    if array.ndim != 1 or array.dtype != np.uint64:
        raise ValueError(f"a passage sample must be a 1-d uint64 array, not {array.dtype} {array.shape}")
    return array


def _check_ref(name: str, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")


def _labels(name: str, value: str | Sequence[str], n: int) -> list[str]:
    if isinstance(value, str):
        _check_ref(name, value)
        return [value] * n
    labels = list(value)
    if len(labels) != n:
        raise ValueError(f"{name} has {len(labels)} labels for {n} records")
    for label in labels:
        _check_ref(name, label)
    return labels
