"""Verified load vs plain ``safetensors.torch.load_file``: the same sharded bf16 model, one run, warm page cache.

The question this answers: what does checking the digest of every byte cost an
inference job at load time? Contenders, all on the same files in the same run:

* ``load_file``: safetensors' own loader, unverified. On CPU its default mmap
  backend reads nothing until a tensor is touched, so it is timed twice: as
  returned (lazy) and after touching one byte per page (what the first forward
  pass pays), and its eager ``pread`` backend is timed too. On CUDA it copies
  everything to the device, so it is timed to ``torch.cuda.synchronize()``.
* ``hash, then load_file``: ``signing.hashing.hash_directory`` over all cores,
  then ``load_file``; what a careful user does today (and it reads every byte
  twice, with a gap an attacker can use).
* ``verified``: ``registry.client.verified_read.read_verified`` with SHA-256 and with
  BLAKE3 expected digests: one read, hashing overlapped with reading (and with
  the device copy on CUDA).

Ratios are against plain ``load_file`` (synchronised on CUDA; on CPU against
both the mmap backend, touched, and the pread backend, since only the latter
gives the caller memory of its own, as a verified read must); below 1.0 means
faster than the unverified load.

    python bench/loader_bench.py                       # 2 GB in 4 shards, CPU
    python bench/loader_bench.py --size 17 --device cuda --repeat 3

Data lives in a temporary directory under --tmp (default /tmp), deleted at the
end unless --keep is given. Each figure is the best of --repeat rounds (the
order of contenders rotates between rounds). Wall-clock timings are only
meaningful on an otherwise idle machine; the load average is printed.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry.client.verified_read import read_verified
from signing.hashing import default_workers, hash_directory

GB = 1_000_000_000
TENSOR_BYTES = 32 << 20  # a 4096 x 4096 bf16 matrix, a typical LLM weight
PAGE = 4096


def make_model(root: Path, size: float, shards: int) -> int:
    """Write ``shards`` bf16 safetensors files totalling about ``size`` GB of random bits; return the bytes."""
    rng = np.random.default_rng(0)
    per_shard = max(1, round(size * GB / shards / TENSOR_BYTES))
    for s in range(shards):
        tensors = {}
        for t in range(per_shard):
            bits = np.frombuffer(rng.bytes(TENSOR_BYTES), dtype=np.int16).copy()
            tensors[f"layers.{s}.{t}.weight"] = torch.from_numpy(bits).view(torch.bfloat16).reshape(4096, -1)
        save_file(tensors, root / f"model-{s + 1:05d}-of-{shards:05d}.safetensors", metadata={"format": "pt"})
        del tensors
    (root / "config.json").write_text('{"architectures": ["BenchModel"], "torch_dtype": "bfloat16"}')
    return sum(p.stat().st_size for p in root.iterdir())


def warm(root: Path) -> None:
    """Read every file once so all contenders start from the page cache."""
    for path in root.iterdir():
        with open(path, "rb", buffering=0) as handle:
            while handle.read(16 << 20):
                pass


def touch(tensors: dict[str, torch.Tensor]) -> None:
    """Read one byte per page of every tensor: forces an mmap-backed tensor's pages in."""
    for tensor in tensors.values():
        flat = tensor.reshape(-1).view(torch.uint8)
        int(flat[::PAGE].sum())


def shards_of(root: Path) -> list[Path]:
    return sorted(root.glob("*.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=float, default=2.0, help="model size in GB (default 2)")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk-mb", type=int, default=8, help="verified loader chunk size in MiB")
    parser.add_argument("--tmp", default=tempfile.gettempdir())
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    is_cuda = device.type == "cuda"
    if is_cuda and not torch.cuda.is_available():
        sys.exit("--device cuda given but torch sees no CUDA device")

    root = Path(tempfile.mkdtemp(prefix="mir-loader-bench-", dir=args.tmp))
    try:
        t0 = time.perf_counter()
        total = make_model(root, args.size, args.shards)
        print(f"model: {args.shards} bf16 safetensors shards, {total / GB:.2f} GB in {root} "
              f"(written in {time.perf_counter() - t0:.1f} s)")  # fmt: skip
        print(f"device {device}, workers {args.workers}, usable cores {default_workers()}, "
              f"load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}")  # fmt: skip
        expected: dict[str, dict[str, str]] = {}
        hash_times: dict[str, float] = {}
        warm(root)
        for algorithm in ("sha256", "blake3"):
            start = time.perf_counter()
            manifest = hash_directory(root, algorithm, args.workers)
            hash_times[algorithm] = time.perf_counter() - start
            expected[algorithm] = {entry.path: entry.digest for entry in manifest.files}

        def sync() -> None:
            if is_cuda:
                torch.cuda.synchronize(device)

        def plain() -> object:
            out = {}
            for path in shards_of(root):
                out.update(load_file(path, device=str(device)))
            if not is_cuda:
                touch(out)
            sync()
            return out

        def plain_lazy() -> object:
            out = {}
            for path in shards_of(root):
                out.update(load_file(path))
            return out

        def plain_pread() -> object:
            out = {}
            for path in shards_of(root):
                out.update(load_file(path, backend="pread"))
            return out

        def hash_then_load() -> object:
            hash_directory(root, "sha256", args.workers)
            return plain()

        def verified(algorithm: str) -> Callable[[], object]:
            def run() -> object:
                result = read_verified(
                    root, expected[algorithm], device=device, workers=args.workers, chunk_size=args.chunk_mb << 20
                )
                sync()
                return result

            return run

        contenders: list[tuple[str, Callable[[], object]]] = [("load_file", plain)]
        if not is_cuda:
            contenders += [("load_file, lazy mmap (no bytes read)", plain_lazy), ("load_file, pread", plain_pread)]
        contenders += [
            ("sha256 hash_directory, then load_file", hash_then_load),
            ("verified, sha256", verified("sha256")),
            ("verified, blake3", verified("blake3")),
        ]
        best: dict[str, float] = {name: float("inf") for name, _ in contenders}
        for round_no in range(args.repeat):
            shift = round_no % len(contenders)
            for name, func in contenders[shift:] + contenders[:shift]:
                gc.collect()
                start = time.perf_counter()
                result = func()
                elapsed = time.perf_counter() - start
                del result
                best[name] = min(best[name], elapsed)

        bases = {"load_file": best["load_file"]}
        if not is_cuda:
            bases["load_file, pread"] = best["load_file, pread"]
        plain_name = "load_file" + ("" if is_cuda else ", mmap, touching every page")
        print(f"\nhash only, {args.workers} workers: sha256 {hash_times['sha256']:.2f} s, "
              f"blake3 {hash_times['blake3']:.2f} s (first run, not repeated)")  # fmt: skip
        ratio_heads = "".join(f" {'vs ' + ('mmap' if b == 'load_file' and not is_cuda else b):>17}" for b in bases)
        print(f"\n{'contender':44} {'best s':>8} {'GB/s':>7}{ratio_heads}")
        for name, _ in contenders:
            shown = plain_name if name == "load_file" else name
            seconds = best[name]
            ratios = "".join(f" {seconds / base:16.2f}x" for base in bases.values())
            print(f"{shown:44} {seconds:8.3f} {total / GB / seconds:7.2f}{ratios}")
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (on a shared machine, figures are noisy)")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
