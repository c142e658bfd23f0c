"""Scan time of one many-file version with one ``mir worker`` versus two (per-blob work sharing).

Usage: python bench/scan_workers_bench.py [--db postgres|sqlite] [--files 20] [--workers 1,2]

Starts the real ``mir serve`` (a fresh PostgreSQL schema by default) with ``MIR_EMBEDDED_WORKERS=0``. For each
worker count it starts that many ``mir worker`` processes on the same database and blob directory, pushes a
fresh version of ``--files`` files with the real SDK (alternately a 4 MiB torch zip state dict and a ~2 MiB
opcode-heavy pickle, like a tokenizer vocabulary: each takes the sandboxed scanner 0.5-1.5 s), and times
commit -> ``scan_status`` no longer ``pending``. Prints each time, the ratio, and how many blobs each worker
scanned (from ``scan_tasks``). Each run's files are new bytes, so no result is reused.
"""

from __future__ import annotations

import argparse
import os
import pickle
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from sqlalchemy import create_engine, text

from registry.client.http import MirClient
from tests.support.databases import database_url
from tests.support.server import MIR, LiveServer, live_server


def make_version(root: Path, files: int, seed: int) -> None:
    """``files`` model files with fresh bytes: torch zip state dicts and opcode-heavy pickles, alternately."""
    root.mkdir(parents=True)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    for i in range(files):
        if i % 2 == 0:
            state = {f"layer{j}.weight": torch.randn(256, 256) for j in range(16)}  # 4 MiB of float32
            torch.save(state, root / f"shard-{i:02d}.pt")
        else:
            vocab = {f"tok{seed}_{j}": j for j in range(60_000)}
            data = {"vocab": vocab, "scores": [rng.random() for _ in range(150_000)]}
            (root / f"tokenizer-{i:02d}.pkl").write_bytes(pickle.dumps(data, protocol=4))


def start_workers(server: LiveServer, count: int) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "MIR_DATABASE_URL": server.database_url, "MIR_DATA_DIR": str(server.data_dir),
           "MIR_CONFIG_DIR": str(server.config_dir), "MIR_LOG_LEVEL": "warning"}
    workers = [subprocess.Popen([*MIR, "worker"], env=env, stdin=subprocess.DEVNULL) for _ in range(count)]
    time.sleep(4)  # imported and polling before the commit, so start-up is not timed
    return workers


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.wait(timeout=60)


def timed_scan(server: LiveServer, client: MirClient, workdir: Path, workers: int, files: int) -> tuple[float, str]:
    source = workdir / f"model-{workers}"
    make_version(source, files, seed=workers)
    ref = f"bench/scan-{workers}-workers@1"
    procs = start_workers(server, workers)
    try:
        client.push(source, ref)
        started = time.perf_counter()
        status = client.show_version(ref)["scan_status"]
        while status == "pending":
            time.sleep(0.05)
            status = client.show_version(ref)["scan_status"]
        return time.perf_counter() - started, status
    finally:
        stop_workers(procs)


def per_worker(url: str, workers: int) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT t.claimed_by FROM scan_tasks t JOIN scan_jobs j ON j.id = t.job_id "
            "JOIN versions v ON v.id = j.version_id JOIN artifacts a ON a.id = v.artifact_id WHERE a.name = :name"
        ), {"name": f"scan-{workers}-workers"}).scalars().all()
    engine.dispose()
    return dict(Counter(str(r) for r in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--workers", default="1,2", help="worker counts to compare, comma separated")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    backend = "postgresql" if args.db == "postgres" else "sqlite"
    with tempfile.TemporaryDirectory(prefix="mir-scan-bench-") as tmp:
        workdir = Path(tmp)
        with database_url(backend, workdir) as url, \
                live_server(url, workdir, env={"MIR_EMBEDDED_WORKERS": "0", "MIR_LOG_LEVEL": "warning"}) as server, \
                MirClient(server.url, server.admin_token) as client:
            print(f"{args.files}-file version, {backend}, {os.cpu_count()} CPUs; timing commit -> scan verdict")
            times: dict[int, float] = {}
            for workers in counts:
                seconds, status = timed_scan(server, client, workdir, workers, args.files)
                times[workers] = seconds
                shares = per_worker(url, workers)
                print(f"  {workers} worker(s): {seconds:6.2f} s  verdict {status}  blobs per worker "
                      f"{sorted(shares.values(), reverse=True)}")
            base = times[counts[0]]
            for workers in counts[1:]:
                print(f"  speed-up {counts[0]} -> {workers} workers: {base / times[workers]:.2f}x")


if __name__ == "__main__":
    main()
