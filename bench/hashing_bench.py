"""Hashing throughput: mir's signing.hashing vs OpenSSF model-signing vs ``openssl dgst``.

One run, the same files for every contender: a directory of ``--size`` GB made
of one large file (``--big-fraction`` of the total) and many small files, in the
page cache (a warm-up read precedes the timings), hashed at 1 thread and at
``--workers`` threads. Ratios are against model-signing with the same algorithm
and mode at 1 thread, and against one ``openssl dgst -sha256`` process.

    python bench/hashing_bench.py                 # 3 GB: one 2 GB file + 1 GB of 256 KiB files
    python bench/hashing_bench.py --size 0.5 --workers 4

Data lives in a temporary directory under --tmp (default /tmp) and is deleted
at the end unless --keep is given. Timings are wall-clock and only meaningful
on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from signing.hashing import default_workers, hash_directory
from signing.sharding import hash_directory_sharded

GB = 1_000_000_000
BLOCK = 16 << 20


def make_data(root: Path, size: float, big_fraction: float, small_size: int) -> tuple[int, int]:
    """Write the big file and the small ones; return (file count, total bytes)."""
    total = int(size * GB)
    big = int(total * big_fraction)
    block = bytearray(os.urandom(BLOCK))
    with open(root / "model.safetensors", "wb") as handle:
        written = 0
        while written < big:
            block[:8] = written.to_bytes(8, "little")  # no two blocks alike
            chunk = memoryview(block)[: min(BLOCK, big - written)]
            handle.write(chunk)
            written += len(chunk)
    count = max(0, (total - big) // small_size)
    for i in range(count):
        sub = root / "shards" / f"{i % 64:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        start = (i * 4099) % (BLOCK - small_size)
        (sub / f"part-{i:05d}.bin").write_bytes(i.to_bytes(8, "little") + block[start + 8 : start + small_size])
    return count + 1, big + count * small_size


def warm(root: Path) -> None:
    """Read every file once so all contenders start from the page cache."""
    for path in root.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                while handle.read(BLOCK):
                    pass


def timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def openssl(root: Path, processes: int) -> None:
    find = subprocess.Popen(["find", str(root), "-type", "f", "-print0"], stdout=subprocess.PIPE)
    xargs = ["xargs", "-0", "-n", "64", "-P", str(processes), "openssl", "dgst", "-sha256"]
    subprocess.run(xargs, stdin=find.stdout, stdout=subprocess.DEVNULL, check=True)
    find.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=float, default=3.0, help="total data in GB (default 3)")
    parser.add_argument("--big-fraction", type=float, default=2 / 3, help="share of the one large file (2/3)")
    parser.add_argument("--small-size", type=int, default=256 << 10, help="bytes per small file (256 KiB)")
    parser.add_argument("--workers", type=int, default=default_workers(), help="threads for the all-cores runs")
    parser.add_argument("--shard-size", type=int, default=256 << 20, help="shard size for sharded SHA-256")
    parser.add_argument("--tmp", type=Path, default=Path("/tmp"), help="where to create the data")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    args = parser.parse_args()

    import model_signing

    def ms_config(workers: int, **mode: object) -> model_signing.hashing.Config:
        config = model_signing.hashing.Config()
        if "shard_size" in mode:
            config.use_shard_serialization(max_workers=workers, **mode)  # type: ignore[arg-type]
        else:
            config.use_file_serialization(max_workers=workers, **mode)  # type: ignore[arg-type]
        return config

    root = Path(tempfile.mkdtemp(prefix="mir-hash-bench-", dir=args.tmp))
    try:
        t0 = time.perf_counter()
        count, total = make_data(root, args.size, args.big_fraction, args.small_size)
        warm(root)
        largest = (root / "model.safetensors").stat().st_size / GB
        print(
            f"data: {count} files, {total / GB:.2f} GB, largest {largest:.2f} GB"
            f" (generated in {time.perf_counter() - t0:.0f} s); cores usable: {default_workers()};"
            f" all-cores runs use {args.workers} workers; shard size {args.shard_size}"
        )

        # Same digests before any timing: both tools must agree on every file.
        ours = {f.path: f.digest.split(":", 1)[1] for f in hash_directory(root, workers=args.workers).files}
        theirs = {
            rd.identifier: rd.digest.digest_hex for rd in ms_config(args.workers).hash(root).resource_descriptors()
        }
        assert ours == theirs, "mir and model-signing disagree on a digest"

        w = args.workers
        s = args.shard_size
        rows: list[tuple[str, str, int, Callable[[], object]]] = [
            ("openssl dgst -sha256", "sha256", 1, lambda: openssl(root, 1)),
            ("openssl dgst -sha256 (xargs -P)", "sha256", w, lambda: openssl(root, w)),
            ("model-signing files", "sha256", 1, lambda: ms_config(1).hash(root)),
            ("model-signing files", "sha256", w, lambda: ms_config(w).hash(root)),
            ("mir hash_directory", "sha256", 1, lambda: hash_directory(root, workers=1)),
            ("mir hash_directory", "sha256", w, lambda: hash_directory(root, workers=w)),
            ("model-signing shards", "sha256-sharded", 1, lambda: ms_config(1, shard_size=s).hash(root)),
            ("model-signing shards", "sha256-sharded", w, lambda: ms_config(w, shard_size=s).hash(root)),
            ("mir hash_directory_sharded", "sha256-sharded", 1, lambda: hash_directory_sharded(root, s, workers=1)),
            ("mir hash_directory_sharded", "sha256-sharded", w, lambda: hash_directory_sharded(root, s, workers=w)),
            ("model-signing files", "blake3", 1, lambda: ms_config(1, hashing_algorithm="blake3").hash(root)),
            ("model-signing files", "blake3", w, lambda: ms_config(w, hashing_algorithm="blake3").hash(root)),
            ("mir hash_directory", "blake3", 1, lambda: hash_directory(root, "blake3", workers=1)),
            ("mir hash_directory", "blake3", w, lambda: hash_directory(root, "blake3", workers=w)),
        ]
        results = [(name, algo, threads, timed(func)) for name, algo, threads, func in rows]
    finally:
        if args.keep:
            print(f"data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    openssl_1 = next(t for name, _, threads, t in results if name.startswith("openssl") and threads == 1)
    baseline = {algo: t for name, algo, threads, t in results if name.startswith("model-signing") and threads == 1}
    print(
        f"\n{'contender':34} {'algorithm':15} {'threads':>7} {'seconds':>8} {'GB/s':>6} "
        f"{'vs ms@1':>8} {'vs openssl@1':>12}"
    )
    for name, algo, threads, seconds in results:
        vs_ms = f"{baseline[algo] / seconds:.2f}x" if algo in baseline else "-"
        print(
            f"{name:34} {algo:15} {threads:>7} {seconds:>8.2f} {total / GB / seconds:>6.2f} {vs_ms:>8} "
            f"{openssl_1 / seconds:>11.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
