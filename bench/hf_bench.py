"""``snapshot_download`` from the registry's HF endpoint against ``mir pull`` of the same version.

One run, printed as a ratio. A model of about 2 GB (several safetensors-sized
shards plus small config and tokenizer files) is generated under /tmp, pushed
once with the Python client, then downloaded by:

- ``mir pull`` (the real CLI in a subprocess): one file at a time, sha256 of
  every byte checked against the manifest before the file is renamed into place;
- ``huggingface_hub.snapshot_download`` (a subprocess with ``HF_ENDPOINT`` set):
  8 files in parallel, size-checked only (the client does not hash).

Both start cold (empty target, empty HF cache) against the same warm server.
Everything generated is deleted at the end.

    .venv/bin/python bench/hf_bench.py [--gib 2.0] [--shards 4]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from registry.client.http import MirClient  # noqa: E402
from tests.support.server import MIR, live_server  # noqa: E402

CHUNK = 64 << 20


def make_model(root: Path, total: int, shards: int) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text('{"model_type": "bert", "hidden_size": 1024}')
    (root / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer"}')
    (root / "vocab.txt").write_text("\n".join(f"tok{i}" for i in range(30_000)))
    per = total // shards
    for n in range(1, shards + 1):
        with open(root / f"model-{n:05d}-of-{shards:05d}.safetensors", "wb") as fh:
            left = per
            while left:
                step = min(CHUNK, left)
                fh.write(os.urandom(step))
                left -= step
    return root


def digests(root: Path) -> dict[str, str]:
    result = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and ".cache" not in p.parts):
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
        result[path.relative_to(root).as_posix()] = h.hexdigest()
    return result


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{cmd[2:5]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=2.0, help="model size in GiB (default 2)")
    parser.add_argument("--shards", type=int, default=4, help="number of weight files (default 4)")
    args = parser.parse_args()
    total = int(args.gib * (1 << 30))
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="mir-hf-bench-", dir="/tmp"))
    try:
        src = make_model(work / "src", total, args.shards)
        (work / "server").mkdir()
        with live_server(f"sqlite:///{work / 'mir.db'}", work / "server") as server:
            with MirClient(server.url, server.admin_token) as client:
                t0 = time.perf_counter()
                pushed = client.push(src, "bench/model@1")
                push_s = time.perf_counter() - t0
            size = pushed["total_size"]
            files = pushed["file_count"]

            pull_dir = work / "pulled"
            pull_s = timed([*MIR, "pull", "bench/model@1", str(pull_dir)], server.env())

            hf_home = work / "hf"
            env = {k: v for k, v in server.env().items() if not k.startswith("HF_")}
            env.update(HF_ENDPOINT=server.url, HF_HOME=str(hf_home), HF_TOKEN=server.admin_token,
                       HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
            script = "from huggingface_hub import snapshot_download; print(snapshot_download('bench/model'))"
            hf_s = timed([sys.executable, "-c", script], env)
            snapshot = next((hf_home / "hub" / "models--bench--model" / "snapshots").iterdir())

        expected = digests(src)
        assert digests(pull_dir) == expected, "mir pull produced different files"
        assert digests(snapshot) == expected, "snapshot_download produced different files"
        gib = size / (1 << 30)
        print(f"model: {files} files, {gib:.2f} GiB; push (not compared) {push_s:.1f} s")
        print(f"mir pull           : {pull_s:6.1f} s  {gib / pull_s * 1024:7.0f} MiB/s  (sha256-verified)")
        print(f"snapshot_download  : {hf_s:6.1f} s  {gib / hf_s * 1024:7.0f} MiB/s  (size-checked only)")
        print(f"ratio snapshot_download / mir pull (time): {hf_s / pull_s:.2f}")
        print(f"cores: {os.cpu_count()}, 1-min load average before: {load_before:.1f}, after: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
