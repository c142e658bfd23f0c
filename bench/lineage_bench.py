"""Lineage walks on a graph of 1,000,000 edges, on SQLite and PostgreSQL, in one run.

Usage: python bench/lineage_bench.py [--edges 1000000] [--layers 40] [--queries 200] [--skip-postgres]

The graph is layered like real lineage: datasets at the bottom (each from two external sources), then
generations of models, each version with two parents picked near it in the generation before (families
stay close, so a 10-level ancestry is a few hundred to a thousand versions, not the whole graph). It is
written with bulk inserts (SQLite ``executemany``, PostgreSQL ``COPY``) into a schema made by the real
migrations, so the indexes are the registry's own. The walks are the registry's own code:
``lineage_graph.graph_page`` (what ``GET .../lineage`` runs) for ancestors and descendants 10 levels deep,
and ``quarantine.quarantine_status`` (what every download runs while a quarantine is active).

Prints build time, p50/p99 latency in ms, and how many edges each walk reached.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, func, insert, select, text

from registry.artifacts.models import Artifact, Version
from registry.core.db import make_engine, make_session_factory
from registry.lineage import graph as lineage_graph
from registry.lineage import quarantine
from registry.lineage.models import ExternalSource, LineageEdge, Quarantine
from registry.server.migrate import ensure_schema
from tests.support.databases import database_url

ARTIFACTS = 1000
WINDOW = 64
BATCH = 50_000
NOW = datetime(2026, 1, 1, tzinfo=UTC)
TYPES = ("fine_tuned_from", "trained_on", "merged_from", "distilled_from", "quantized_from", "derived_from")


class Shape:
    """Layer sizes and parent choices, decided once so both databases get the same graph."""

    def __init__(self, edges: int, layers: int, seed: int = 7) -> None:
        self.width = edges // (2 * layers)  # two parents per version (layer 0: two external sources)
        self.layers = layers
        self.versions = self.width * layers
        self.rng = random.Random(seed)

    def vid(self, layer: int, index: int) -> int:
        return layer * self.width + index + 1

    def edge_rows(self) -> Iterator[tuple[int, int | None, int | None, str]]:
        """(child, parent version, parent external, type) for every edge."""
        for i in range(self.width):
            yield self.vid(0, i), None, 2 * i + 1, "imported_from"
            yield self.vid(0, i), None, 2 * i + 2, "derived_from"
        rng = random.Random(11)
        for layer in range(1, self.layers):
            for i in range(self.width):
                lo, hi = max(0, i - WINDOW), min(self.width - 1, i + WINDOW)
                for p in rng.sample(range(lo, hi + 1), 2):
                    yield self.vid(layer, i), self.vid(layer - 1, p), None, TYPES[(layer + p) % len(TYPES)]


def _chunks(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == BATCH:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _version_rows(shape: Shape) -> Iterator[dict[str, Any]]:
    for vid in range(1, shape.versions + 1):
        yield {
            "id": vid, "artifact_id": (vid - 1) % ARTIFACTS + 1, "version": str((vid - 1) // ARTIFACTS),
            "state": "committed", "manifest_digest": "sha256:" + f"{vid:064x}", "file_count": 0, "total_size": 0,
            "created_at": NOW, "created_by": "bench", "committed_at": NOW,
        }


def _external_rows(shape: Shape) -> Iterator[dict[str, Any]]:
    for eid in range(1, 2 * shape.width + 1):
        yield {"id": eid, "kind": "huggingface", "uri": f"hf://datasets/src/d{eid}", "revision": f"{eid:040x}",
               "created_at": NOW}


def _edge_dicts(shape: Shape) -> Iterator[dict[str, Any]]:
    for child, parent, external, kind in shape.edge_rows():
        yield {"child_version_id": child, "parent_version_id": parent, "parent_external_id": external,
               "type": kind, "attributes": {"mixture_fraction": 0.5}, "origin": "declared", "at_push": True,
               "created_at": NOW, "created_by": "bench"}


def build_sqlite(engine: Engine, shape: Shape) -> None:
    artifacts = [{"id": i, "namespace": "bench", "name": f"a{i}", "kind": "model", "created_at": NOW,
                  "created_by": "bench"} for i in range(1, ARTIFACTS + 1)]
    with engine.begin() as conn:
        conn.execute(insert(Artifact), artifacts)
        for table, rows in ((Version, _version_rows(shape)), (ExternalSource, _external_rows(shape)),
                            (LineageEdge, _edge_dicts(shape))):
            for chunk in _chunks(rows):
                conn.execute(insert(table), chunk)
        conn.exec_driver_sql("ANALYZE")


def _copy(conn: Any, table: str, columns: list[str], rows: Iterator[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def build_postgres(engine: Engine, shape: Shape) -> None:
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None
        _copy(conn, "artifacts", ["id", "namespace", "name", "kind", "created_at", "created_by"],
              ((i, "bench", f"a{i}", "model", NOW, "bench") for i in range(1, ARTIFACTS + 1)))
        cols = ["id", "artifact_id", "version", "state", "manifest_digest", "file_count", "total_size",
                "created_at", "created_by", "committed_at"]
        _copy(conn, "versions", cols, (tuple(r[c] for c in cols) for r in _version_rows(shape)))
        cols = ["id", "kind", "uri", "revision", "created_at"]
        _copy(conn, "external_sources", cols, (tuple(r[c] for c in cols) for r in _external_rows(shape)))
        cols = ["child_version_id", "parent_version_id", "parent_external_id", "type", "attributes", "origin",
                "at_push", "created_at", "created_by"]
        _copy(conn, "lineage_edges", cols, (
            (c, p, x, k, '{"mixture_fraction": 0.5}', "declared", True, NOW, "bench")
            for c, p, x, k in shape.edge_rows()))
        with conn.cursor() as cur:
            for table, column in (("artifacts", "id"), ("versions", "id"), ("external_sources", "id")):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), (SELECT max({column}) "
                            f"FROM {table}))")
            cur.execute("ANALYZE")
        conn.commit()
    finally:
        raw.close()


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


def measure(engine: Engine, shape: Shape, queries: int) -> dict[str, tuple[float, float, str]]:
    """name -> (p50 ms, p99 ms, what each query returned on average)."""
    sessions = make_session_factory(engine)
    rng = random.Random(3)
    results: dict[str, tuple[float, float, str]] = {}

    def run(name: str, pick: Callable[[], int], call: Callable[[Any, Version], int], unit: str = "edges",
            count: int = queries) -> None:
        times, sizes = [], []
        for _ in range(count):
            with sessions() as s:
                version = s.get(Version, pick())
                assert version is not None
                _ = version.artifact  # loaded like the API does before it walks
                start = time.perf_counter()
                sizes.append(call(s, version))
                times.append((time.perf_counter() - start) * 1000)
        p50, p99 = _percentiles(times)
        mean = statistics.mean(sizes)
        results[name] = (p50, p99, f"{mean:.0f} {unit}" if unit == "edges" else f"{100 * mean:.0f}% {unit}")

    def deep() -> int:
        return shape.vid(rng.randrange(10, shape.layers), rng.randrange(shape.width))

    def shallow() -> int:
        return shape.vid(rng.randrange(0, shape.layers - 10), rng.randrange(shape.width))

    def page(up: bool) -> Callable[[Any, Version], int]:
        def call(s: Any, v: Version) -> int:
            return len(lineage_graph.graph_page(s, v, up=up, depth=10, can_read=lineage_graph.everyone,
                                                limit=1000)["edges"])
        return call

    def full(up: bool) -> Callable[[Any, Version], int]:
        def call(s: Any, v: Version) -> int:
            return len(lineage_graph.walk_edges(s, v.id, up=up, depth=10))
        return call

    run("ancestors, depth 10, first page (<=1000 edges)", deep, page(True))
    run("descendants, depth 10, first page (<=1000 edges)", shallow, page(False))
    run("ancestors, depth 10, every edge", deep, full(True))
    run("descendants, depth 10, every edge", shallow, full(False))
    nearby, middle = max(1, shape.layers // 4), shape.width // 2
    with sessions() as s:  # quarantine a dataset that certainly has descendants: a parent of a middle version
        bad = s.scalar(select(LineageEdge.parent_version_id).where(LineageEdge.child_version_id ==
                                                                   shape.vid(1, middle)).limit(1))
        s.add(Quarantine(version_id=bad, reason="bench", created_by="bench"))
        s.commit()

    def status(s: Any, v: Version) -> int:
        return 1 if quarantine.quarantine_status(s, v) is not None else 0

    def near_quarantine() -> int:  # near the quarantined dataset: many are its descendants, the rest are not
        return shape.vid(nearby, min(shape.width - 1, max(0, middle + rng.randrange(-WINDOW, WINDOW + 1))))

    def deepest() -> int:  # the whole ancestry, every level down to the datasets, is walked
        return shape.vid(shape.layers - 1, rng.randrange(shape.width))

    run(f"quarantine status, {nearby} levels below one active quarantine", near_quarantine, status, "affected")
    run(f"quarantine status, {shape.layers - 1} levels deep (whole ancestry)", deepest, status, "affected",
        count=max(10, queries // 10))
    with sessions() as s:
        s.execute(text("DELETE FROM quarantines"))
        s.commit()
    run("quarantine status, no active quarantine", deep, status, "affected")
    return results


def bench(backend: str, shape: Shape, queries: int, workdir: Path) -> None:
    with database_url(backend, workdir) as url:
        engine = make_engine(url)
        ensure_schema(engine, url, auto_migrate=True)
        start = time.perf_counter()
        (build_sqlite if backend == "sqlite" else build_postgres)(engine, shape)
        built = time.perf_counter() - start
        with engine.connect() as conn:
            edges = conn.execute(select(func.count()).select_from(LineageEdge)).scalar_one()
        print(f"\n{backend}: built {edges:,} edges over {shape.versions:,} versions in {built:.1f} s "
              f"({edges / built:,.0f} edges/s, bulk inserts into the migrated schema, indexes included)")
        print(f"  {'query':<64} {'p50 ms':>8} {'p99 ms':>8}  returned (mean)")
        for name, (p50, p99, size) in measure(engine, shape, queries).items():
            print(f"  {name:<64} {p50:8.1f} {p99:8.1f}  {size}")
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=1_000_000)
    parser.add_argument("--layers", type=int, default=40)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    shape = Shape(args.edges, args.layers)
    print(f"lineage bench: {args.edges:,} edges, {args.layers} layers of {shape.width:,} versions, "
          f"two parents each within +-{WINDOW} positions; {args.queries} queries per figure")
    with tempfile.TemporaryDirectory(prefix="mir-lineage-bench-") as tmp:
        for backend in ("sqlite", *(() if args.skip_postgres else ("postgresql",))):
            bench(backend, shape, args.queries, Path(tmp))


if __name__ == "__main__":
    main()
