"""Semantic near-duplicates: records that paraphrase or heavily edit registered synthetic records.

The fingerprint layer (exact hashes, MinHash, passage containment) finds copies that keep most word
3-grams; a paraphrase, a sentence-by-sentence rewrite or 30 % of the words changed keeps few. This layer
compares meaning instead: each record becomes one unit vector, the weighted mean of its tokens' static
embeddings, and a record whose cosine similarity to a registered synthetic record reaches a threshold is a
*semantic match*.

Why a static model: it needs no GPU and no network. The token embeddings are WordLlama's ``l2_supercat``
256-dimension codebook (MIT; distilled from the token embeddings of Llama-2-family models), shipped as
files inside the ``wordllama`` wheel; they are read here straight from the installed package with
``tokenizers`` and ``safetensors``, so nothing is downloaded at run time. The ``wordllama`` package itself
is never imported: its import configures the root logger, and ``WordLlama.load()`` (0.4.0.post1) looks for
the tokenizer in ``wordllama/tokenizer/`` while the wheel ships it in ``tokenizers/``, so it downloads the
file from the Hugging Face Hub (offline it fails). The
model key (``Embedder.key``) includes a digest of both files: vectors made by another model version never
meet in one comparison.

Pooling: token ``i`` weighs ``log(i + 2)`` and tokens of punctuation or spaces only weigh 0. The
vocabulary's ids grow as BPE merges get rarer and single characters come last, where rare words fall
apart into pieces, so this weighs names and terms above function words (as SIF weighting does).
``bench/semantic_eval_bench.py`` compares it with the plain mean: more paraphrases found at the same
threshold and no more false matches on human text (QuillBot paraphrases of ChatGPT answers: 0.76 against
0.67 at cosine 0.90).

Search: ``SemanticIndex`` answers exactly (a blocked matrix product) while that is cheaper, and otherwise
through a usearch HNSW graph (inner product on unit vectors = cosine) built once per index -- the registry
builds one per scan, so the graph pays off only for large indices and many queries (see the class).
usearch was chosen over faiss and hnswlib by measurement: with the same graph parameters it built and
searched as fast as faiss HNSW (50,000 vectors on one core: about 4,400 vectors/s added, 3,500 queries/s,
99.9 % of the queries with a vector above the threshold found it), keeps vectors as float16 itself, takes
its thread count per call (no process-wide OpenMP runtime beside torch's in the scan worker), and ships as
a wheel (hnswlib is an sdist).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from scanners.contamination.errors import ContaminationError
from scanners.contamination.records import Record
from scanners.report import Finding, Report, Verdict

SCANNER_NAME = "contamination.semantic"
DIM = 256
PACKAGE = "wordllama"
WEIGHTS = "weights/l2_supercat_256.safetensors"
TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"
POOLING = "logid-nopunct-1"
# Records shorter than this many words are neither registered nor matched: a short text's mean vector is
# dominated by a few tokens and lands near many others.
MIN_WORDS = 12
# Only the first MAX_CHARS characters of a record are embedded, so that one huge record costs bounded time
# and memory (its meaning is clear long before).
MAX_CHARS = 20_000
DEFAULT_BATCH = 512
# Search (SemanticIndex): below EXACT_BELOW registered vectors always exact; above, exact until the queries'
# dot products reach GRAPH_AFTER per registered vector (about what building the graph costs), then the graph.
# Measured on two shared cores: exact 60-110 million dot products/s (20,000-100,000 vectors), graph build
# ~4,400 vectors/s (so one vector's build costs ~20,000 dot products) and graph search ~3,500 queries/s (exact
# search is as fast up to ~30,000 vectors).
EXACT_BELOW = 32_768
GRAPH_AFTER = 20_000
EXACT_BLOCK = 8192
# HNSW parameters (measured in bench/semantic_eval_bench.py: every registered vector above the threshold found).
CONNECTIVITY = 16
EXPANSION_ADD = 64
EXPANSION_SEARCH = 64

# The default threshold and the false matches measured at it and near it by bench/semantic_eval_bench.py on
# human text no one here wrote, against 998 registered GPT answers: 394 student answers to the same university
# course questions as registered ChatGPT answers (comnetsAD/ChatGPT; at 0.90 one of them, 24 words restating
# the answer's first sentences) and 10,591 WikiText-2 paragraphs, halves, chunks and wrapped paragraphs (none).
# (threshold, false matches, human records, of which same-question answers: false matches, records). A
# configured threshold reports the nearest measured one at or below it.
# 0.91 is the lowest measured threshold with no false match on either: the fingerprint layer already matches one
# of the 394 same-question answers, so 0.90 (one more, 0.51 % with both layers) would pass the 0.5 % bound on
# that case; 0.91 finds 69 % of QuillBot paraphrases (0.90: 76 %).
DEFAULT_THRESHOLD = 0.91
MEASURED_FALSE_MATCHES: tuple[tuple[float, int, int, int, int], ...] = (
    (0.85, 18, 10985, 18, 394), (0.86, 16, 10985, 16, 394), (0.87, 9, 10985, 9, 394), (0.88, 5, 10985, 5, 394),
    (0.89, 2, 10985, 2, 394), (0.90, 1, 10985, 1, 394), (0.91, 0, 10985, 0, 394), (0.92, 0, 10985, 0, 394),
    (0.94, 0, 10985, 0, 394),
)
MEASUREMENT = "bench/semantic_eval_bench.py"

Vectors = NDArray[np.float32]


class SemanticUnavailableError(ContaminationError, RuntimeError):
    """The semantic layer needs the ``semantic`` extra (wordllama's files, tokenizers, usearch)."""


def _package_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)  # locate without importing: see the module docstring
    if spec is None or not spec.submodule_search_locations:
        raise SemanticUnavailableError("the semantic layer needs the 'semantic' extra: pip install 'mir[semantic]'")
    return Path(next(iter(spec.submodule_search_locations)))


def word_count(text: str) -> int:
    return len(text.split())


class Embedder:
    """Static sentence embeddings from the token codebook shipped in the ``wordllama`` wheel (CPU, offline)."""

    def __init__(self, codebook: NDArray[np.float32], weights: NDArray[np.float32], tokenizer: Any, key: str):
        self._codebook = codebook
        self._weights = weights
        self._tokenizer = tokenizer
        self.key = key

    @classmethod
    def load(cls, package_dir: Path | None = None) -> Embedder:
        """Read the codebook and tokenizer files of the installed package; never touches the network."""
        root = package_dir or _package_dir()
        weights_path, tokenizer_path = root / WEIGHTS, root / TOKENIZER
        try:
            from safetensors import safe_open
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise SemanticUnavailableError(f"the semantic layer needs {exc.name}: pip install 'mir[semantic]'") from exc
        for path in (weights_path, tokenizer_path):
            if not path.is_file():
                raise SemanticUnavailableError(f"{path} is missing: reinstall the 'semantic' extra")
        digest = hashlib.sha256()
        for path in (weights_path, tokenizer_path):
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
        try:
            with safe_open(str(weights_path), framework="np") as f:
                codebook = np.ascontiguousarray(f.get_tensor("embedding.weight"), dtype=np.float32)
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # a damaged install: say so rather than fail deep inside
            raise SemanticUnavailableError(f"cannot read the embedding model in {root}: {exc}") from exc
        if codebook.ndim != 2 or codebook.shape[1] != DIM or codebook.shape[0] != tokenizer.get_vocab_size():
            raise SemanticUnavailableError(f"unexpected embedding model shape {codebook.shape} in {root}")
        tokenizer.no_padding()
        tokenizer.no_truncation()
        weights = np.log(np.arange(codebook.shape[0], dtype=np.float64) + 2.0)
        for token_id in range(codebook.shape[0]):
            piece = tokenizer.id_to_token(token_id) or ""
            if not any(ch.isalnum() for ch in piece.replace("\u2581", "")):
                weights[token_id] = 0.0
        key = f"wordllama-l2s-256:{digest.hexdigest()[:16]}:{POOLING}"
        return cls(codebook, weights.astype(np.float32), tokenizer, key)

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Unit vectors, one row per text (a zero row for a text without any weighted token)."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tokenizer.encode_batch([t[:MAX_CHARS] for t in texts], add_special_tokens=False)
        for row, encoding in enumerate(encodings):
            ids = np.asarray(encoding.ids, dtype=np.int64)
            if ids.size:
                vector = self._weights[ids] @ self._codebook[ids]
                norm = float(np.linalg.norm(vector))
                if norm > 0.0:
                    out[row] = vector / norm
        return out


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A query's most similar registered record: its position in the index and the cosine similarity."""

    record_id: int
    similarity: float


class SemanticIndex:
    """Registered synthetic records' vectors with their dataset and generator labels, searched for the most
    similar one: exactly (one matrix product) while that is cheaper, through an HNSW graph after.

    Why both: the index is built anew for each scan, so a graph costs its build (about 4,400 vectors/s)
    before it saves anything, while an exact search costs ``len(self)`` dot products a query (60-110
    million/s with two BLAS threads). Below ``exact_below`` vectors exact search is cheaper even per query;
    above, queries are answered exactly until their work reaches what building the graph costs
    (``graph_after`` dot products per vector), and then the graph is built once and searched.
    """

    def __init__(self, *, exact_below: int = EXACT_BELOW, graph_after: int = GRAPH_AFTER, threads: int = 0) -> None:
        """``threads`` is for searching the graph (0: usearch's default); one thread builds it."""
        self.exact_below = exact_below
        self.graph_after = graph_after
        self.threads = threads
        self._vectors: list[NDArray[np.float32]] = []
        self._n = 0
        self._exact_work = 0
        self._graph: Any = None
        self._labels: list[tuple[str, str]] = []
        self._label_ids: dict[tuple[str, str], int] = {}
        self._sources: list[NDArray[np.uint32]] = []
        self._ordinals: list[NDArray[np.int64]] = []
        _usearch()  # fail early when the extra is missing

    def __len__(self) -> int:
        return self._n

    @property
    def uses_graph(self) -> bool:
        return self._graph is not None

    def add(self, vectors: NDArray[np.floating[Any]], dataset_ref: str | Sequence[str],
            generator_ref: str | Sequence[str], ordinals: Sequence[int] | NDArray[np.int64]) -> None:
        """Add unit vectors (n, DIM) with one label each (or one for all) and their record ordinals."""
        array = np.asarray(vectors)
        if array.ndim != 2 or array.shape[1] != DIM:
            raise ValueError(f"vectors must have shape (n, {DIM}), not {array.shape}")
        n = array.shape[0]
        ords = np.asarray(ordinals, dtype=np.int64)
        if ords.shape != (n,):
            raise ValueError(f"{n} vectors need {n} ordinals, not {ords.shape}")
        datasets = [dataset_ref] * n if isinstance(dataset_ref, str) else list(dataset_ref)
        generators = [generator_ref] * n if isinstance(generator_ref, str) else list(generator_ref)
        if len(datasets) != n or len(generators) != n:
            raise ValueError(f"{n} vectors need {n} labels")
        if n == 0:
            return
        if self._graph is not None:
            raise ValueError("the index is searched through its graph already: build a new one to add vectors")
        sources = np.fromiter((self._label_id((d, g)) for d, g in zip(datasets, generators, strict=True)),
                              dtype=np.uint32, count=n)
        # Stored as float16 values (what the registry keeps), computed with in float32.
        self._vectors.append(array.astype(np.float16).astype(np.float32))
        self._sources.append(sources)
        self._ordinals.append(ords)
        self._n += n
        for name in ("_matrix", "_source_column", "_ordinal_column"):
            self.__dict__.pop(name, None)

    def _label_id(self, label: tuple[str, str]) -> int:
        found = self._label_ids.get(label)
        if found is None:
            found = self._label_ids[label] = len(self._labels)
            self._labels.append(label)
        return found

    @cached_property
    def _matrix(self) -> NDArray[np.float32]:
        matrix = np.concatenate(self._vectors) if self._vectors else np.empty((0, DIM), dtype=np.float32)
        self._vectors = [matrix]
        return matrix

    @cached_property
    def _source_column(self) -> NDArray[np.uint32]:
        return np.concatenate(self._sources) if self._sources else np.empty(0, dtype=np.uint32)

    @cached_property
    def _ordinal_column(self) -> NDArray[np.int64]:
        return np.concatenate(self._ordinals) if self._ordinals else np.empty(0, dtype=np.int64)

    def source(self, record_id: int) -> tuple[str, str, int]:
        """(dataset_ref, generator_ref, ordinal) of a registered record."""
        dataset, generator = self._labels[int(self._source_column[record_id])]
        return dataset, generator, int(self._ordinal_column[record_id])

    def nearest(self, queries: Vectors) -> list[Neighbour | None]:
        """Each query's most similar registered record (None when the index is empty or the query is zero)."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != DIM:
            raise ValueError(f"queries must have shape (n, {DIM}), not {q.shape}")
        out: list[Neighbour | None] = [None] * q.shape[0]
        live = np.flatnonzero(np.any(q != 0.0, axis=1))
        if self._n == 0 or live.size == 0:
            return out
        if self._graph is None and (self._n < self.exact_below or self._exact_work < self.graph_after * self._n):
            self._exact_work += int(live.size) * self._n
            keys, sims = self._exact(q[live])
        else:
            keys, sims = self._search_graph(q[live])
        for row, key, sim in zip(live.tolist(), keys.tolist(), sims.tolist(), strict=True):
            if key >= 0:
                out[row] = Neighbour(int(key), min(1.0, float(sim)))
        return out

    def _exact(self, q: NDArray[np.float32]) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Best inner product by blocks of registered vectors (memory: queries x EXACT_BLOCK floats)."""
        best = np.full(q.shape[0], -np.inf, dtype=np.float32)
        keys = np.full(q.shape[0], -1, dtype=np.int64)
        matrix = self._matrix
        for lo in range(0, matrix.shape[0], EXACT_BLOCK):
            scores = q @ matrix[lo : lo + EXACT_BLOCK].T
            arg = scores.argmax(axis=1)
            top = scores[np.arange(q.shape[0]), arg]
            better = top > best
            best[better], keys[better] = top[better], arg[better] + lo
        return keys, best

    def _search_graph(self, q: NDArray[np.float32]) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        if self._graph is None:
            graph = _usearch()(ndim=DIM, metric="ip", dtype="f16", connectivity=CONNECTIVITY,
                               expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)
            # One thread builds it: the same vectors in the same order give the same graph, so a scan run again
            # gives the same answer (concurrent inserts missed a near copy about once in 3,000 queries).
            graph.add(np.arange(self._n, dtype=np.uint64), self._matrix.astype(np.float16), threads=1)
            self._graph = graph
        found = self._graph.search(q, 1, threads=self.threads)
        if np.asarray(found.keys).size == 0:
            return np.full(q.shape[0], -1, dtype=np.int64), np.zeros(q.shape[0], dtype=np.float32)
        keys = np.asarray(found.keys, dtype=np.int64).reshape(q.shape[0], -1)[:, 0]
        sims = 1.0 - np.asarray(found.distances, dtype=np.float32).reshape(q.shape[0], -1)[:, 0]
        # One query comes back as ``Matches`` (no counts; empty keys when nothing was found), several as
        # ``BatchMatches``.
        counts = np.asarray(found.counts).reshape(-1) if hasattr(found, "counts") else np.asarray([keys.size > 0])
        keys[counts == 0] = -1
        return keys, sims.astype(np.float32)


def _usearch() -> Any:
    try:
        from usearch.index import Index
    except ImportError as exc:
        raise SemanticUnavailableError("the semantic layer needs usearch: pip install 'mir[semantic]'") from exc
    return Index


def false_match_rate(threshold: float) -> dict[str, Any] | None:
    """The false-match rate measured on human text at the nearest measured threshold at or below
    ``threshold`` (conservative), with its 95 % upper bound, overall and on human answers to the same
    prompts as registered machine text (the hard case); None below every measured threshold."""
    measured = [m for m in MEASURED_FALSE_MATCHES if m[0] <= threshold + 1e-9]
    if not measured:
        return None
    at, false, checked, same_false, same_checked = max(measured)
    return {"at_threshold": at, "false_matches": false, "human_records": checked,
            "rate": false / checked, "upper_95": _upper_95(false, checked),
            "same_prompt": {"false_matches": same_false, "human_records": same_checked,
                            "rate": same_false / same_checked, "upper_95": _upper_95(same_false, same_checked)},
            "measured_by": MEASUREMENT}


def _upper_95(k: int, n: int) -> float:
    """One-sided 95 % Clopper-Pearson upper bound of a rate seen k times in n (bisection on the binomial tail)."""
    if k >= n:
        return 1.0
    lo, hi = k / n, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        tail = sum(math.comb(n, i) * mid**i * (1 - mid) ** (n - i) for i in range(k + 1))
        lo, hi = (mid, hi) if tail > 0.05 else (lo, mid)
    return hi


@dataclass(slots=True)
class SemanticReport:
    """How many records of a dataset are semantic near-duplicates of registered synthetic records.

    ``matched_fraction`` is over ``scored_records`` (records of at least ``MIN_WORDS`` words); a record
    counts once, for the dataset and generator of its most similar registered record.
    """

    threshold: float
    total_records: int = 0
    scored_records: int = 0
    matched_records: int = 0
    per_dataset: dict[str, int] = field(default_factory=dict)
    per_generator: dict[str, int] = field(default_factory=dict)
    registered_vectors: int = 0

    @property
    def matched_fraction(self) -> float:
        return self.matched_records / self.scored_records if self.scored_records else 0.0

    def count(self, index: SemanticIndex, neighbours: Sequence[Neighbour | None]) -> list[bool]:
        """Account one batch of scored records' neighbours; returns which matched."""
        self.scored_records += len(neighbours)
        matched = []
        for found in neighbours:
            hit = found is not None and found.similarity >= self.threshold
            matched.append(hit)
            if found is not None and hit:
                self.matched_records += 1
                dataset, generator, _ = index.source(found.record_id)
                self.per_dataset[dataset] = self.per_dataset.get(dataset, 0) + 1
                self.per_generator[generator] = self.per_generator.get(generator, 0) + 1
        return matched

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": "wordllama l2_supercat 256 (static token embeddings, weighted mean)",
            "threshold": self.threshold,
            "total_records": self.total_records,
            "scored_records": self.scored_records,
            "matched_records": self.matched_records,
            "matched_fraction": self.matched_fraction,
            "per_dataset": dict(sorted(self.per_dataset.items())),
            "per_generator": dict(sorted(self.per_generator.items())),
            "registered_vectors": self.registered_vectors,
            "false_match_rate": false_match_rate(self.threshold),
        }

    def to_report(self, *, max_fraction: float = 0.0) -> Report:
        """``suspicious`` when more than ``max_fraction`` of scored records match, else ``clean``: a semantic
        match is evidence, never proof (see the false-match rate), so never ``malicious`` and never ``error``."""
        report = Report(scanner=SCANNER_NAME, format="text-records")
        if not self.matched_records:
            return report
        rate = false_match_rate(self.threshold)
        basis = (f"; measured false matches on human text {rate['false_matches']} of {rate['human_records']}, "
                 f"on human answers to the same prompts {rate['same_prompt']['false_matches']} of "
                 f"{rate['same_prompt']['human_records']}" if rate else "")
        summary = (f"{self.matched_records} of {self.scored_records} records ({self.matched_fraction:.2%}) are "
                   f"semantic near-duplicates (paraphrases or heavy edits) of registered synthetic records "
                   f"(cosine >= {self.threshold:.2f}{basis})")
        if self.matched_fraction > max_fraction:
            report.add(Finding(Verdict.SUSPICIOUS, f"{summary}: more than the limit {max_fraction:.2%}",
                               rule="synthetic-semantic-match"))
        else:
            report.add(Finding(Verdict.CLEAN, f"{summary}, within the limit of {max_fraction:.2%}"))
        return report


@dataclass(frozen=True, slots=True)
class EmbeddedBatch:
    """Records of one batch from position ``start``; ``positions`` and ``vectors`` cover those long enough."""

    start: int
    items: list[Record | str]
    positions: list[int]
    vectors: Vectors


def embedded_batches(embedder: Embedder, records: Iterable[Record | str], *,
                     batch_size: int = DEFAULT_BATCH) -> Iterator[EmbeddedBatch]:
    """The records embedded in bounded batches (only those of at least ``MIN_WORDS`` words)."""
    iterator = iter(records)
    start = 0
    while items := list(islice(iterator, batch_size)):
        texts = [_text(item) for item in items]
        positions = [start + i for i, t in enumerate(texts) if word_count(t) >= MIN_WORDS]
        vectors = embedder.embed([texts[p - start] for p in positions])
        yield EmbeddedBatch(start, items, positions, vectors)
        start += len(items)


def match_records(index: SemanticIndex, embedder: Embedder, records: Iterable[Record | str], *,
                  threshold: float = DEFAULT_THRESHOLD, batch_size: int = DEFAULT_BATCH) -> SemanticReport:
    """Match every record of a dataset against the index, streaming in batches."""
    report = SemanticReport(threshold=threshold, registered_vectors=len(index))
    for batch in embedded_batches(embedder, records, batch_size=batch_size):
        report.total_records += len(batch.items)
        report.count(index, index.nearest(batch.vectors))
    return report


def _text(item: Record | str) -> str:
    if isinstance(item, Record):
        return item.text
    if isinstance(item, str):
        return item
    raise TypeError(f"records must be Record or str, not {type(item).__name__}")
