"""Audit log at scale, on SQLite and PostgreSQL: append throughput and proof times at N entries.

Usage: python bench/audit_bench.py [--entries 1000000] [--appends 2000] [--proofs 500] [--backends sqlite,postgresql]

The first N entries are bulk-loaded (same canonical bodies, leaf hashes and
Merkle nodes the service writes, inserted in batches) so the bench does not
take hours; then it measures the real service path: ``audit.record`` appends
(each its own transaction, as the API does) and inclusion / consistency proof
generation at the full size, printed as throughput and p50/p99 latencies.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, update

from registry.audit import log as audit
from registry.audit.models import AuditEntry, AuditState, MerkleNode
from registry.core.context import RegistryContext
from registry.core.settings import Settings
from registry.core.tables import utcnow
from registry.server.migrate import ensure_schema
from signing.jcs import canonicalize
from signing.merkle import InMemoryNodeStore, MerkleLog
from tests.support.databases import database_url


def bulk_load(ctx: RegistryContext, n: int, batch: int = 20_000) -> float:
    started = time.perf_counter()
    store = InMemoryNodeStore()
    log = MerkleLog(store)
    at = utcnow()
    written_levels: dict[int, int] = {}
    for start in range(0, n, batch):
        bodies, rows = [], []
        for i in range(start, min(n, start + batch)):
            body = {"index": i, "at": at.isoformat(), "actor": "bench", "action": "bench.event",
                    "artifact": "bench/x", "version": str(i % 100), "details": {"i": i}}
            bodies.append(canonicalize(body))
        leaves = log.append_many(bodies)
        for (index, leaf), body in zip(leaves, bodies, strict=True):
            rows.append({"leaf_index": index, "at": at, "actor": "bench", "action": "bench.event",
                         "namespace": "bench", "name": "x", "version": str(index % 100),
                         "body": body.decode(), "leaf_hash": leaf.hex()})
        nodes = []
        for level in range(64):
            have = store.count(level)
            if have == 0:
                break
            done = written_levels.get(level, 0)
            got = store.get_many([(level, i) for i in range(done, have)])
            nodes.extend({"level": lv, "idx": ix, "hash": h} for (lv, ix), h in got.items())
            written_levels[level] = have
        with ctx.transaction() as s:
            s.execute(insert(AuditEntry), rows)
            s.execute(insert(MerkleNode), nodes)
            s.execute(update(AuditState).where(AuditState.id == 1).values(size=log.size))
    return time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) >= 2 else values[0]


def run(backend: str, n: int, appends: int, proofs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, database_url(backend, Path(tmp)) as url:
        ctx = RegistryContext.create(Settings(database_url=url, data_dir=Path(tmp) / "data"))
        ensure_schema(ctx.engine, url, auto_migrate=True)
        load_s = bulk_load(ctx, n)
        t0 = time.perf_counter()
        for i in range(appends):
            with ctx.transaction() as s:
                audit.record(s, action="bench.append", actor="bench", namespace="bench", name="x", details={"i": i})
        append_s = time.perf_counter() - t0
        size = n + appends
        rng = random.Random(1)
        incl, cons = [], []
        for _ in range(proofs):
            index = rng.randrange(size)
            t = time.perf_counter()
            with ctx.transaction() as s:
                audit.inclusion_proof(s, index, size)
            incl.append((time.perf_counter() - t) * 1000)
            old = rng.randrange(1, size)
            t = time.perf_counter()
            with ctx.transaction() as s:
                audit.consistency_proof(s, old, size)
            cons.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        with ctx.transaction() as s:
            audit.current_tree_head(s, ctx.signer, "bench")
        head_ms = (time.perf_counter() - t) * 1000
        ctx.engine.dispose()
    print(f"{backend:<11} entries {size:>9,}  bulk load {load_s:7.1f} s")
    print(f"{'':<11} append (one transaction each): {appends / append_s:8.0f} entries/s  "
          f"({append_s / appends * 1000:.2f} ms each)")
    print(f"{'':<11} inclusion proof:   p50 {pct(incl, 50):6.2f} ms  p99 {pct(incl, 99):6.2f} ms")
    print(f"{'':<11} consistency proof: p50 {pct(cons, 50):6.2f} ms  p99 {pct(cons, 99):6.2f} ms")
    print(f"{'':<11} sign a new tree head at this size: {head_ms:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--proofs", type=int, default=500)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        run(backend, args.entries, args.appends, args.proofs)


if __name__ == "__main__":
    main()
