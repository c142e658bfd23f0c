"""Passage containment: a record's text found *inside* a longer registered record.

Why: MinHash estimates the Jaccard similarity of whole records, which halves
when a copy keeps only the first half of a record and falls further when a
dataset is re-chunked into pieces that are each a small part of one record.
Containment -- the share of a query passage's shingles that one registered
record holds -- stays near 1 in both cases.

How: each registered record keeps a consistent sample of its word-shingle
hashes (those divisible by ``sample``: the same shingle is kept or dropped in
every record, so a sample of a part is the part of the sample). A query record
is cut into passages (windows of ``window`` words, half overlapping); a passage
is *contained* when one registered record holds at least ``min_shared`` of its
sampled hashes and at least ``min_containment`` of them. A record matches when
at least ``min_passage_share`` of its passages are contained. Hashes that occur
in more than ``max_postings`` registered records (boilerplate such as "one of
the") are ignored: they say nothing about copying and would make a query cost
grow with the index.

Shingle hashes are 64-bit: CRC-32 of each word (stable across processes, unlike
``hash``), mixed across the ``ngram`` positions and finalised with the
MurmurHash3 64-bit mixer, all vectorised in numpy.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

Hashes = NDArray[np.uint64]

_P = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_WORD_CACHE_LIMIT = 1 << 18  # words (about 30 MB)
_word_cache: dict[str, int] = {}
_EMPTY = np.empty(0, dtype=np.uint64)


@dataclass(frozen=True, slots=True)
class PassageConfig:
    """Parameters of passage containment, chosen with bench/contamination_eval_bench.py on public GPT-3.5/4
    answers and Wikipedia text: a lower ``min_containment`` (0.4) finds all copies with 20 % of their words
    edited but also 3 % of independent answers to the same prompts (0.5: 94 % and 1.7 %); no human paragraph
    matched at either. ``sample`` 2 keeps about one hash per 2 words (8 bytes each)."""

    ngram: int = 3
    sample: int = 2
    window: int = 80
    min_shared: int = 4
    min_containment: float = 0.5
    min_passage_share: float = 0.5
    max_postings: int = 64

    def __post_init__(self) -> None:
        for name in ("ngram", "sample", "window", "min_shared", "max_postings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if self.window < 2 * self.ngram:
            raise ValueError("window must be at least twice ngram")
        for name in ("min_containment", "min_passage_share"):
            value = getattr(self, name)
            if not isinstance(value, float | int) or isinstance(value, bool) or not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], not {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PassageConfig:
        """Strict inverse of ``to_dict``: unknown or missing keys are an error, not a default."""
        expected = set(cls.__dataclass_fields__)
        if set(data) != expected:
            raise ValueError(f"passage config keys {sorted(data)} differ from {sorted(expected)}")
        return cls(**dict(data))


def _word_hashes(tokens: Sequence[str]) -> Hashes:
    """CRC-32 of each word, through a bounded module-wide cache (most words of a corpus recur)."""
    cache = _word_cache
    missing = set(tokens).difference(cache)
    if missing:
        if len(cache) + len(missing) > _WORD_CACHE_LIMIT:
            cache.clear()
        for word in missing:
            cache[word] = zlib.crc32(word.encode("utf-8"))
    try:
        return np.array(list(map(cache.__getitem__, tokens)), dtype=np.uint64)
    except KeyError:  # another thread cleared the cache meanwhile
        return np.array([zlib.crc32(t.encode("utf-8")) for t in tokens], dtype=np.uint64)


def shingle_hashes(tokens: Sequence[str], ngram: int) -> Hashes:
    """One 64-bit hash per word ``ngram``-gram, in text order (a text shorter than ``ngram`` words: one)."""
    if not tokens:
        return _EMPTY
    words = _word_hashes(tokens)
    n = max(1, len(tokens) - ngram + 1)
    mixed = (words[:n] ^ np.uint64(ngram)) * _P  # seeded with ngram, then one mixing round per position
    mixed ^= mixed >> _S33
    for j in range(1, min(ngram, len(tokens))):
        mixed = (mixed ^ words[j : j + n]) * _P
        mixed ^= mixed >> _S33
    mixed *= _M1
    mixed ^= mixed >> _S33
    mixed *= _M2
    mixed ^= mixed >> _S33
    return mixed


def sample(hashes: Hashes, every: int) -> Hashes:
    """The distinct hashes divisible by ``every``, sorted: a consistent 1-in-``every`` sample of a shingle set."""
    return _distinct(hashes[hashes % np.uint64(every) == 0] if every > 1 else hashes)


def _distinct(values: Hashes) -> Hashes:
    """Sorted distinct values (``np.unique`` costs several times more for arrays this small)."""
    ordered = np.sort(values)
    if ordered.size < 2:
        return ordered
    kept: Hashes = ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]
    return kept


def record_sample(tokens: Sequence[str], config: PassageConfig) -> Hashes:
    """What the index keeps of a registered record: the sample of all its shingles."""
    return sample(shingle_hashes(tokens, config.ngram), config.sample)


def query_passages(tokens: Sequence[str], config: PassageConfig) -> list[Hashes]:
    """A query record's passages (windows of ``window`` words, half overlapping, the last one flush with the
    end), each as its shingle sample. A record no longer than a window is one passage."""
    return list(passage_fingerprint(tokens, config)[1])


@dataclass(frozen=True, slots=True)
class PassageHit:
    """The registered record holding most of a passage: its id, how many sampled hashes, and the share."""

    record_id: int
    shared: int
    containment: float


class PassageIndex:
    """Sampled shingle hashes of registered records: a sorted (hash, record id) table for containment queries."""

    def __init__(self, config: PassageConfig | None = None) -> None:
        self.config = config or PassageConfig()
        self._keys: Hashes = _EMPTY
        self._ids = np.empty(0, dtype=np.uint32)
        self._pending_keys: list[Hashes] = []
        self._pending_ids: list[NDArray[np.uint32]] = []
        self._records = 0  # records holding at least one hash
        self._entries = 0
        self._span = 0  # 1 + the largest record id

    def __len__(self) -> int:
        return self._records

    @property
    def entries(self) -> int:
        return self._entries

    def add(self, record_ids: Sequence[int], samples: Sequence[Hashes]) -> None:
        """Register each record's sample (``record_sample``) under its id in the enclosing index."""
        for rid, hashes in zip(record_ids, samples, strict=True):
            if hashes.size == 0:
                continue
            self._pending_keys.append(np.asarray(hashes, dtype=np.uint64))
            self._pending_ids.append(np.full(hashes.size, rid, dtype=np.uint32))
            self._records += 1
            self._entries += int(hashes.size)
            self._span = max(self._span, int(rid) + 1)

    def drop_from(self, record_id: int) -> None:
        """Forget every record with an id >= ``record_id`` (the enclosing index's rollback)."""
        self._flush()
        keep = self._ids < record_id
        if not np.all(keep):
            self._keys, self._ids = self._keys[keep], self._ids[keep]
            self._records = int(np.unique(self._ids).size)
            self._entries = int(self._keys.size)
            self._span = min(self._span, record_id)

    def _flush(self) -> None:
        if not self._pending_keys:
            return
        keys = np.concatenate([self._keys, *self._pending_keys])
        ids = np.concatenate([self._ids, *self._pending_ids])
        self._pending_keys, self._pending_ids = [], []
        order = np.argsort(keys, kind="stable")
        self._keys, self._ids = keys[order], ids[order]

    def samples(self, n: int) -> list[Hashes]:
        """Each record's sample (ids 0..n-1, empty where none), rebuilt from the table: for persistence."""
        self._flush()
        order = np.argsort(self._ids, kind="stable")
        ids, keys = self._ids[order], self._keys[order]
        bounds = np.searchsorted(ids, np.arange(n + 1, dtype=np.int64), side="left")
        return [np.sort(keys[bounds[i] : bounds[i + 1]]) for i in range(n)]

    def query(self, passages: Sequence[Hashes]) -> list[PassageHit | None]:
        """For each passage, the registered record containing it (``min_shared`` and ``min_containment``)."""
        self._flush()
        out: list[PassageHit | None] = [None] * len(passages)
        if not passages or self._keys.size == 0:
            return out
        cfg = self.config
        sizes = np.fromiter((p.size for p in passages), dtype=np.int64, count=len(passages))
        if int(sizes.sum()) == 0:
            return out
        flat = np.concatenate(passages)
        owner = np.repeat(np.arange(len(passages), dtype=np.int64), sizes)
        order = np.lexsort((flat, owner))  # a hash repeated inside one passage counts once
        flat, owner = flat[order], owner[order]
        distinct = np.r_[True, (flat[1:] != flat[:-1]) | (owner[1:] != owner[:-1])]
        flat, owner = flat[distinct], owner[distinct]
        sizes = np.bincount(owner, minlength=len(passages))
        lo = np.searchsorted(self._keys, flat, side="left")
        hi = np.searchsorted(self._keys, flat, side="right")
        counts = hi - lo
        common = counts > cfg.max_postings
        # Boilerplate hashes count neither for nor against a passage.
        informative = sizes - np.bincount(owner[common], minlength=len(passages))
        take = (counts > 0) & ~common
        counts, lo, owner = counts[take], lo[take], owner[take]
        total = int(counts.sum())
        if total == 0:
            return out
        rows = np.repeat(owner, counts)
        positions = np.repeat(lo - (np.cumsum(counts) - counts), counts) + np.arange(total, dtype=np.int64)
        records = self._ids[positions].astype(np.int64)
        span = np.int64(self._span)
        pairs, shared = np.unique(rows * span + records, return_counts=True)
        passage_of, record_of = pairs // span, pairs % span
        # Best record per passage: most shared hashes, then the lowest id.
        order = np.lexsort((record_of, -shared, passage_of))
        first = order[np.r_[True, passage_of[order][1:] != passage_of[order][:-1]]]
        for i in first.tolist():
            p = int(passage_of[i])
            n = int(shared[i])
            denominator = max(1, int(informative[p]))
            containment = n / denominator
            if n >= cfg.min_shared and containment >= cfg.min_containment:
                out[p] = PassageHit(int(record_of[i]), n, min(1.0, containment))
        return out

    def record_matches(self, records: Sequence[Sequence[Hashes]]) -> list[list[PassageHit]]:
        """For each query record (its ``query_passages``): the hits of its contained passages when at least
        ``min_passage_share`` of them are contained, else an empty list."""
        flat: list[Hashes] = [p for passages in records for p in passages]
        hits = self.query(flat)
        out: list[list[PassageHit]] = []
        at = 0
        for passages in records:
            mine = [h for h in hits[at : at + len(passages)] if h is not None]
            at += len(passages)
            enough = passages and len(mine) >= self.config.min_passage_share * len(passages)
            out.append(mine if enough else [])
        return out


def passage_fingerprint(tokens: Sequence[str], config: PassageConfig) -> tuple[Hashes, tuple[Hashes, ...]]:
    """Both sides at once (the shingles hashed once): the record's sample (distinct, sorted) and its query
    passages (views of the sampled hashes in text order; duplicates are removed when they are queried)."""
    hashes = shingle_hashes(tokens, config.ngram)
    keep = hashes % np.uint64(config.sample) == 0 if config.sample > 1 else np.ones(hashes.size, dtype=bool)
    positions = np.flatnonzero(keep)
    values = hashes[positions]
    whole = _distinct(values)
    span = config.window - config.ngram + 1
    if hashes.size <= span:
        return whole, (whole,)
    stride = max(1, span // 2)
    starts = np.arange(0, hashes.size - span + 1, stride)
    if starts[-1] != hashes.size - span:
        starts = np.append(starts, hashes.size - span)
    lo = np.searchsorted(positions, starts, side="left").tolist()
    hi = np.searchsorted(positions, starts + span, side="left").tolist()
    return whole, tuple(values[a:b] for a, b in zip(lo, hi, strict=True))

