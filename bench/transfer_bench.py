"""Upload and download throughput of one large file over loopback, against `cp`, with peak RSS.

Usage: python bench/transfer_bench.py [--size-gib 2] [--workdir /tmp/mir-bench]

Prints one table: cp, mir push (hash + upload + commit), the upload phase alone,
and mir pull (download + verify), each as MB/s and as a ratio to cp, plus the
peak RSS of the server and of each client process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.server import live_server

MiB = 1 << 20

CLIENT = textwrap.dedent(
    """
    import json, resource, sys, time
    from registry.client.http import MirClient
    from signing.hashing import hash_directory
    url, token, op, a, b = sys.argv[1:6]
    with MirClient(url, token) as c:
        t0 = time.perf_counter()
        if op == "push":
            manifest = hash_directory(a)
            t1 = time.perf_counter()
            c.push(a, b, manifest=manifest)
        else:
            t1 = t0
            c.pull(a, b)
        t2 = time.perf_counter()
    # VmHWM is this process's own peak; ru_maxrss would include the parent's RSS at fork time.
    hwm = next(l for l in open("/proc/self/status").read().splitlines() if l.startswith("VmHWM:"))
    print(json.dumps({"total": t2 - t0, "hash": t1 - t0, "transfer": t2 - t1, "rss_mib": int(hwm.split()[1]) / 1024}))
    """
)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(MiB)
    with open(path, "wb") as fh:
        for i in range(size // MiB):
            fh.write(block[i % 251 :] + block[: i % 251])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mir-transfer-bench"))
    args = parser.parse_args()
    size = int(args.size_gib * 1024) * MiB
    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    src = work / "src"
    make_file(src / "model.bin", size)

    t0 = time.perf_counter()
    subprocess.run(["cp", str(src / "model.bin"), str(work / "cp-copy.bin")], check=True)
    subprocess.run(["sync"], check=True)
    cp_s = time.perf_counter() - t0
    (work / "cp-copy.bin").unlink()

    import json

    rows = {}
    with live_server(f"sqlite:///{work / 'mir.db'}", work) as server:
        base_rss = peak_rss_mib(server.process.pid)
        for op, a, b in (("push", str(src), "bench/big@1"), ("pull", "bench/big@1", str(work / "pulled"))):
            out = subprocess.run(
                [sys.executable, "-c", CLIENT, server.url, server.admin_token, op, a, b],
                capture_output=True, text=True, check=True,
            )
            rows[op] = json.loads(out.stdout.strip().splitlines()[-1])
        server_rss = peak_rss_mib(server.process.pid)

    mb = size / 1e6

    def line(name: str, seconds: float, rss: str) -> str:
        return f"{name:<34} {seconds:8.2f} s {mb / seconds:9.1f} MB/s {cp_s / seconds:8.2f}x cp   {rss}"

    print(f"file: {size / MiB:.0f} MiB, loopback, SQLite + local blobs, page cache warm for reads")
    print(line("cp (+sync)", cp_s, ""))
    push_rss, pull_rss = rows["push"]["rss_mib"], rows["pull"]["rss_mib"]
    print(line("mir push: hash+upload+commit", rows["push"]["total"], f"client peak RSS {push_rss:.0f} MiB"))
    print(line("  of which local hashing", rows["push"]["hash"], ""))
    print(line("  of which upload+commit", rows["push"]["transfer"], ""))
    print(line("mir pull: download+verify", rows["pull"]["total"], f"client peak RSS {pull_rss:.0f} MiB"))
    growth = server_rss - base_rss
    print(f"server peak RSS: {server_rss:.0f} MiB (at start {base_rss:.0f} MiB, growth {growth:.0f} MiB)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
