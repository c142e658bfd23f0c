"""Audit-log Merkle primitives at scale: append, root and proof costs with 1,000,000 entries.

Uses the in-memory node store (the registry's SQL store has its own bench), so the
figures are the CPU cost of the algorithm plus the node I/O *counts* a database
would see. Peers, measured in the same run:

* a log that keeps only leaf hashes and recomputes (RFC 9162 MTH / PATH over the
  leaves) for every root or proof: O(n) per request;
* ``json.dumps(sort_keys=True, separators=(",", ":"))`` for canonical JSON.

Run: ``.venv/bin/python bench/merkle_bench.py [--entries N] [--proofs P]``
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Iterable, Mapping, Sequence

from signing.jcs import canonicalize
from signing.merkle import (
    InMemoryNodeStore,
    MerkleLog,
    NodeKey,
    leaf_hash,
    mth,
    node_hash,
    verify_consistency,
    verify_inclusion,
)


class CountingStore:
    """Delegates to the in-memory store and counts what a database would be asked."""

    def __init__(self) -> None:
        self.inner = InMemoryNodeStore()
        self.batches = 0
        self.reads = 0
        self.writes = 0
        self.max_write = 0

    def get(self, level: int, index: int) -> bytes:
        self.reads += 1
        return self.inner.get(level, index)

    def get_many(self, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
        keys = list(keys)
        self.batches += 1
        self.reads += len(keys)
        return self.inner.get_many(keys)

    def put_many(self, items: Mapping[NodeKey, bytes]) -> None:
        self.writes += len(items)
        self.max_write = max(self.max_write, len(items))
        self.inner.put_many(items)


def naive_path(m: int, leaves: Sequence[bytes], lo: int, hi: int) -> list[bytes]:
    """RFC 9162 PATH recomputed from the leaf hashes alone (the store-less peer)."""
    if hi - lo == 1:
        return []
    k = 1 << ((hi - lo - 1).bit_length() - 1)
    if m < k:
        return [*naive_path(m, leaves, lo, lo + k), mth(leaves[lo + k : hi])]
    return [*naive_path(m - k, leaves, lo + k, hi), mth(leaves[lo : lo + k])]


def per_op(seconds: float, count: int) -> str:
    return f"{seconds / count * 1e6:9.2f} µs/op"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=20_000)
    parser.add_argument("--naive", type=int, default=3, help="store-less peer requests to time")
    args = parser.parse_args()
    n, p = args.entries, args.proofs
    rng = random.Random(7)

    entries = [
        b'{"action":"version.commit","actor":"user-%d","digest":"sha256:%064x","seq":%d}' % (i % 97, i, i)
        for i in range(n)
    ]

    store = CountingStore()
    log = MerkleLog(store)
    t0 = time.perf_counter()
    for entry in entries:
        log.append(entry)
    t_append = time.perf_counter() - t0
    print(f"entries                     {n:,}")
    print(f"append (one at a time)      {per_op(t_append, n)}   total {t_append:.2f} s")
    print(
        f"  nodes written/append      avg {store.writes / n:.3f}, max {store.max_write}; "
        f"reads {store.reads}; store {len(store.inner) * 32 / 2**20:.1f} MiB of hashes"
    )

    batch_log = MerkleLog(InMemoryNodeStore())
    t0 = time.perf_counter()
    for start in range(0, n, 1000):
        batch_log.append_many(entries[start : start + 1000])
    t_batch = time.perf_counter() - t0
    print(f"append_many (1000/batch)    {per_op(t_batch, n)}")
    assert batch_log.root() == log.root()

    sizes = [rng.randint(1, n) for _ in range(p)]
    indices = [rng.randrange(s) for s in sizes]
    olds = [rng.randint(1, s) for s in sizes]

    store.batches = store.reads = 0
    t0 = time.perf_counter()
    roots = [log.root(s) for s in sizes]
    t_root = time.perf_counter() - t0
    print(f"root(size)                  {per_op(t_root, p)}   reads/op {store.reads / p:.1f}")

    max_reads = 0
    t_incl = 0.0
    proofs = []
    for i, s in zip(indices, sizes, strict=True):
        before = store.reads
        t0 = time.perf_counter()
        proofs.append(log.inclusion_proof(i, s))
        t_incl += time.perf_counter() - t0
        max_reads = max(max_reads, store.reads - before)
    print(f"inclusion_proof(i, size)    {per_op(t_incl, p)}   max reads {max_reads}, 1 batch each")

    t0 = time.perf_counter()
    for i, s, proof, root in zip(indices, sizes, proofs, roots, strict=True):
        assert verify_inclusion(leaf_hash(entries[i]), i, s, proof, root)
    print(f"verify_inclusion            {per_op(time.perf_counter() - t0, p)}")

    max_reads = 0
    t_cons = 0.0
    cproofs = []
    for m, s in zip(olds, sizes, strict=True):
        before = store.reads
        t0 = time.perf_counter()
        cproofs.append(log.consistency_proof(m, s))
        t_cons += time.perf_counter() - t0
        max_reads = max(max_reads, store.reads - before)
    print(f"consistency_proof(m, size)  {per_op(t_cons, p)}   max reads {max_reads}, 1 batch each")

    old_roots = [log.root(m) for m in olds]
    t0 = time.perf_counter()
    for m, s, proof, old_root, root in zip(olds, sizes, cproofs, old_roots, roots, strict=True):
        assert verify_consistency(m, s, old_root, root, proof)
    print(f"verify_consistency          {per_op(time.perf_counter() - t0, p)}")

    # Peer: keep only the leaf hashes and recompute per request.
    leaves = [store.inner.get(0, i) for i in range(n)]
    t0 = time.perf_counter()
    for _ in range(args.naive):
        assert mth(leaves) == log.root()
    t_naive_root = (time.perf_counter() - t0) / args.naive
    t0 = time.perf_counter()
    for k in range(args.naive):
        assert naive_path(indices[k], leaves, 0, sizes[k]) == proofs[k]
    t_naive_path = (time.perf_counter() - t0) / args.naive
    print(
        f"peer: recompute root        {t_naive_root * 1e3:9.1f} ms/op   "
        f"ratio {t_naive_root / (t_root / p):,.0f}x slower than root(size)"
    )
    print(
        f"peer: recompute PATH        {t_naive_path * 1e3:9.1f} ms/op   "
        f"ratio {t_naive_path / (t_incl / p):,.0f}x slower than inclusion_proof"
    )
    del leaves

    # Canonical JSON for the entries themselves.
    docs = [
        {"action": "version.commit", "actor": f"user-{i % 97}", "digest": f"sha256:{i:064x}", "seq": i, "ok": True}
        for i in range(min(n, 100_000))
    ]
    t0 = time.perf_counter()
    for d in docs:
        canonicalize(d)
    t_jcs = time.perf_counter() - t0
    t0 = time.perf_counter()
    for d in docs:
        json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    t_dumps = time.perf_counter() - t0
    print(
        f"jcs.canonicalize            {per_op(t_jcs, len(docs))}   "
        f"ratio {t_jcs / t_dumps:.2f}x json.dumps(sort_keys) (which is not RFC 8785)"
    )
    print(f"node_hash                   {per_op(_time_node_hash(), 100_000)}")


def _time_node_hash() -> float:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    t0 = time.perf_counter()
    for _ in range(100_000):
        node_hash(a, b)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
