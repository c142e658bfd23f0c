"""Banded LSH over MinHash signatures, kept in sorted numpy arrays.

Why not ``datasketch.MinHashLSH``: its in-memory storage is a dict of Python
sets per band. Measured here at 32 bands x 4 rows it costs about 11 KB and
~0.2 ms per indexed record (1.1 GB and ~20 s for 100,000 records), and the
index would have to be rebuilt that way on every load. The banding rule is
the same (a candidate shares all ``rows`` values of at least one band; tests
check our candidate sets equal datasketch's), but each band here is one sorted
uint64 key array plus a uint32 permutation: 12 bytes per record per band,
built with one vectorised sort and queried with ``searchsorted`` for a whole
batch at once.

A band key is a 64-bit mix of the band's ``rows`` signature values. Distinct
bands colliding on a key only adds a candidate, which the Jaccard check that
follows rejects.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

_PRIME = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)


def band_keys(signatures: NDArray[np.uint32], bands: int, rows: int) -> NDArray[np.uint64]:
    """(n, bands) 64-bit keys: one per band of ``rows`` consecutive signature values."""
    n = signatures.shape[0]
    values = signatures[:, : bands * rows].astype(np.uint64).reshape(n, bands, rows)
    keys = np.full((n, bands), np.uint64(rows), dtype=np.uint64)
    for j in range(rows):
        keys = (keys ^ values[:, :, j]) * _PRIME
        keys ^= keys >> _S33
    keys *= _M1
    keys ^= keys >> _S33
    keys *= _M2
    keys ^= keys >> _S33
    return keys


class BandIndex:
    """Candidate lookup: record ids sharing at least one band key with a query."""

    def __init__(self, bands: int, rows: int) -> None:
        self.bands = bands
        self.rows = rows
        self._sorted_keys = np.empty((bands, 0), dtype=np.uint64)
        self._order = np.empty((bands, 0), dtype=np.uint32)
        self._pending: list[NDArray[np.uint64]] = []
        self._pending_start = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, signatures: NDArray[np.uint32]) -> None:
        """Append records with ids ``len(self) ...``; the sorted tables are rebuilt on the next query."""
        if signatures.shape[0] == 0:
            return
        if not self._pending:
            self._pending_start = self._size
        self._pending.append(band_keys(signatures, self.bands, self.rows))
        self._size += signatures.shape[0]
        if self._size >= 2**32:
            raise OverflowError("a band index holds at most 2**32 - 1 records")

    def truncate(self, size: int) -> None:
        """Forget records ``size ...`` that are still pending (not yet merged into the sorted tables)."""
        flushed = self._pending_start if self._pending else self._size
        if size < flushed:
            raise ValueError("cannot drop records already merged into the band tables")
        if size >= self._size:
            return
        kept: list[NDArray[np.uint64]] = []
        remaining = size - flushed
        for chunk in self._pending:
            if remaining <= 0:
                break
            kept.append(chunk[:remaining])
            remaining -= chunk.shape[0]
        self._pending = kept
        self._size = size

    def _flush(self) -> None:
        if not self._pending:
            return
        new_keys = np.concatenate(self._pending).T  # (bands, m)
        new_ids = np.arange(self._pending_start, self._size, dtype=np.uint32)
        self._pending = []
        keys = np.concatenate([self._sorted_keys, new_keys], axis=1)
        ids = np.concatenate([self._order, np.broadcast_to(new_ids, new_keys.shape)], axis=1)
        perm = np.argsort(keys, axis=1, kind="stable")
        self._sorted_keys = np.ascontiguousarray(np.take_along_axis(keys, perm, axis=1))
        self._order = np.ascontiguousarray(np.take_along_axis(ids, perm, axis=1))

    def candidates(
        self, signatures: NDArray[np.uint32], max_bucket: int
    ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """Unique (query index, record id) pairs for a batch of query signatures.

        At most ``max_bucket`` records are taken from any one bucket, so that a
        huge cluster of identical signatures cannot make one query cost O(n).
        """
        self._flush()
        q = signatures.shape[0]
        if q == 0 or self._size == 0:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty
        qkeys = band_keys(signatures, self.bands, self.rows)
        q_parts: list[NDArray[np.int64]] = []
        id_parts: list[NDArray[np.int64]] = []
        for b in range(self.bands):
            column = self._sorted_keys[b]
            lo = np.searchsorted(column, qkeys[:, b], side="left")
            hi = np.searchsorted(column, qkeys[:, b], side="right")
            counts = np.minimum(hi - lo, max_bucket)
            total = int(counts.sum())
            if total == 0:
                continue
            qidx = np.repeat(np.arange(q, dtype=np.int64), counts)
            starts = np.repeat(lo - (np.cumsum(counts) - counts), counts)
            positions = starts + np.arange(total, dtype=np.int64)
            q_parts.append(qidx)
            id_parts.append(self._order[b][positions].astype(np.int64))
        if not q_parts:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty
        pair = np.unique(np.concatenate(q_parts) * np.int64(self._size) + np.concatenate(id_parts))
        return pair // self._size, pair % self._size
