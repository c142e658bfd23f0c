"""What the gate costs a job at start-up: `mir run --verify` and `from_pretrained_verified`, one run.

Against a real `mir serve` (SQLite, loopback) holding a signed, scanned version:

* ``mir run --verify REF DIR -- true`` (hash + private copy + signature and policy checks, then the job)
  against starting the job alone (``true``), and against the old way, ``mir verify REF DIR --policy`` then the
  job (verify in place: a second read, and a gap). The model is ``--size-gib`` of safetensors shards.
* ``from_pretrained_verified(GPT2LMHeadModel, ...)`` against ``GPT2LMHeadModel.from_pretrained(DIR)`` for a
  GPT-2 of ``--gpt2-layers`` layers (random weights, saved by transformers).

    python bench/run_gate_bench.py                      # 1 GiB model, 6-layer GPT-2
    python bench/run_gate_bench.py --size-gib 4 --repeat 3

Each figure is the best of ``--repeat`` rounds, page cache warm (the files are read once before timing).
Wall-clock figures only mean something on an otherwise idle machine; the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from registry.client.loader import from_pretrained_verified
from signing.hashing import hash_directory
from tests.support.gate import Namespace
from tests.support.server import MIR, live_server


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def make_shards(root: Path, size_gib: float, shards: int = 4) -> None:
    root.mkdir(parents=True)
    per_shard = int(size_gib * (1 << 30)) // shards
    rng = np.random.default_rng(0)
    for i in range(shards):
        data = rng.integers(0, 255, size=per_shard, dtype=np.uint8)
        save_file({f"w{i}": data}, str(root / f"model-{i + 1:05d}-of-{shards:05d}.safetensors"))
    (root / "config.json").write_text('{"model_type": "bench"}')


def make_gpt2(root: Path, layers: int) -> None:
    from transformers import BertTokenizerFast, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"w{i}" for i in range(1000))]
    GPT2LMHeadModel(GPT2Config(n_layer=layers, vocab_size=len(words))).save_pretrained(root)
    (root / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(root / "vocab.txt")).save_pretrained(root)


def warm(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            path.read_bytes()


def run(cmd: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--gpt2-layers", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        work = Path(tmp)
        (work / "server").mkdir()
        with live_server(f"sqlite:///{work / 'mir.db'}", work / "server") as server:
            ns = Namespace(server, work, "bench")
            model = work / "model"
            make_shards(model, args.size_gib)
            ns.push(model, "bench/model@1")
            gpt2 = work / "gpt2"
            make_gpt2(gpt2, args.gpt2_layers)
            ns.push(gpt2, "bench/gpt2@1")
            env = server.env()
            warm(model)
            warm(gpt2)
            key = ["--key", str(ns.pub)]
            plain = best(lambda: run(["true"], env), args.repeat)
            gated = best(lambda: run([*MIR, "run", "--verify", "bench/model@1", str(model), *key, "--", "true"], env),
                         args.repeat)
            in_place = best(lambda: (run([*MIR, "verify", "bench/model@1", str(model), *key, "--policy"], env),
                                     run(["true"], env)), args.repeat)

            from transformers import GPT2LMHeadModel

            kw = {"keys": [ns.pub], "registry_key": ns.registry_pub, "url": server.url, "token": server.admin_token}
            hf_plain = best(lambda: GPT2LMHeadModel.from_pretrained(gpt2), args.repeat)
            hashed = best(lambda: hash_directory(gpt2), args.repeat)
            gpt2_bytes = sum(p.stat().st_size for p in gpt2.rglob("*") if p.is_file())
            hf_verified = best(lambda: from_pretrained_verified(GPT2LMHeadModel, "bench/gpt2@1", gpt2, **kw),
                               args.repeat)
    print(f"cores {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}, best of {args.repeat}")
    print(f"mir run --verify, {args.size_gib:g} GiB in 4 safetensors shards:")
    print(f"  plain start (true)                      {plain:8.3f} s")
    print(f"  mir run --verify ... -- true            {gated:8.3f} s   overhead {gated - plain:6.3f} s")
    print(f"  mir verify --policy, then true (gap)    {in_place:8.3f} s   ratio run/verify-in-place "
          f"{gated / in_place:5.2f}x")
    print(f"from_pretrained, GPT-2 with {args.gpt2_layers} layers ({gpt2_bytes / 1e6:.0f} MB):")
    print(f"  GPT2LMHeadModel.from_pretrained (mmap)  {hf_plain:8.3f} s")
    print(f"  sha256 of its files alone (all cores)   {hashed:8.3f} s")
    print(f"  from_pretrained_verified                {hf_verified:8.3f} s   ratio {hf_verified / hf_plain:5.2f}x, "
          f"vs from_pretrained + hashing {hf_verified / (hf_plain + hashed):5.2f}x")


if __name__ == "__main__":
    main()
