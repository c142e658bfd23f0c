"""The scan worker's contamination step on a dataset upload: records/s for a plain upload and a ``generated_by``
upload (which is also fingerprinted into the index), on SQLite.

Run: ``.venv/bin/python bench/contamination_worker_bench.py [--records 20000] [--repeat 3] [--no-passages]
[--semantic]``

A model, a ``generated_by`` dataset of ``--records`` generated records (20-80 words, the tests' word
frequencies) and a plain dataset of as many other records are committed through the service layer; then
``registry.synthetic.contamination.analyse`` runs on each, ``--repeat`` times (a rerun replaces its rows),
and the best time is printed. Issue 17 measured 2,409 vs 4,403 records/s: the generated upload was
fingerprinted twice, once to match and once to index it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from registry.artifacts.holdings import record_holding
from registry.artifacts.versions import get_or_create_artifact, open_version, record_blob
from registry.core.context import RegistryContext
from registry.core.names import parse_ref
from registry.core.settings import Settings
from registry.lineage import edges as lineage
from registry.push.commit import commit_version
from registry.server.migrate import ensure_schema
from registry.synthetic.contamination import analyse
from signing.manifest import FileEntry, Manifest
from tests.scanners.contamination.textgen import make_records


def push(ctx: RegistryContext, reference: str, kind: str, data: bytes, decls: list[dict[str, Any]]) -> int:
    ref = parse_ref(reference, require_ref=True)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with ctx.transaction() as s:
        if not ctx.blobs.exists(digest, len(data)):
            writer = ctx.blobs.writer(digest, len(data))
            writer.write(data)
            writer.commit()
        record_blob(s, digest, len(data))
        record_holding(s, ref.namespace, [digest])
        art = get_or_create_artifact(s, ref.namespace, ref.name, kind, "bench")
        manifest = Manifest.from_entries([FileEntry("data.jsonl" if kind == "dataset" else "w.bin", len(data), digest)])
        version, resumed = open_version(s, ctx.blobs, art, ref.ref or "", manifest, actor="bench")
        lineage.declare_at_open(s, version, lineage.parse_declarations(decls), can_read=lambda _: True,
                                actor="bench", resumed=resumed)
        commit_version(s, ctx.blobs, version, actor="bench")
        return version.id


def jsonl(records: list[str]) -> bytes:
    return "".join(json.dumps({"text": r}) + "\n" for r in records).encode()


def timed(ctx: RegistryContext, vid: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        analyse(ctx, vid)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-passages", action="store_true", help="MIR_SYNTHETIC_PASSAGES=false")
    parser.add_argument("--semantic", action="store_true", help="MIR_SYNTHETIC_SEMANTIC=true (the semantic layer)")
    args = parser.parse_args()
    n = args.records
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        extra: dict[str, Any] = {"synthetic_passages": False} if args.no_passages else {}
        if args.semantic:
            extra["synthetic_semantic"] = True
        settings = Settings(database_url=url, blob_store=f"file://{tmp}/blobs", data_dir=Path(tmp), **extra)
        ctx = RegistryContext.create(settings)
        ensure_schema(ctx.engine, url, auto_migrate=True)
        push(ctx, "bench/m@1", "model", b"weights", [])
        generated = push(ctx, "bench/gen@1", "dataset", jsonl(make_records(n, random.Random(1))),
                         [{"type": "generated_by", "parent": {"ref": "bench/m@1"}, "attributes": {}}])
        plain = push(ctx, "bench/plain@1", "dataset", jsonl(make_records(n, random.Random(2))), [])
        analyse(ctx, generated)  # the plain upload is matched against an index of n records, as in real use
        gen_s = timed(ctx, generated, args.repeat)
        plain_s = timed(ctx, plain, args.repeat)
        ctx.engine.dispose()
    print(f"{n:,} records of 20-80 words, best of {args.repeat}, passages {'off' if args.no_passages else 'on'}"
          f"{', semantic layer on' if args.semantic else ''}:")
    print(f"  plain upload (match only):              {n / plain_s:>8,.0f} records/s ({plain_s:.1f} s)")
    print(f"  generated_by upload (match and index):  {n / gen_s:>8,.0f} records/s ({gen_s:.1f} s)")


if __name__ == "__main__":
    main()
