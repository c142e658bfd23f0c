"""Detection, false positives and throughput of ``mir scan`` against picklescan, modelscan and fickling.

Run: ``.venv/bin/python bench/scan_bench.py [--bomb-mib 300] [--big-gib 2] [--skip-throughput]``

The corpus is ``tests/scanners/corpus.py`` (benign / third-party / malformed / malicious
files, all with harmless payloads). Each peer is driven through its public API the way
its own CLI does it, and its answer is mapped to our four verdicts as ``bench/peers.py``
describes (shared with ``bench/peer_corpus_bench.py``).

"Caught" means malicious or suspicious; "caught incl. errors" also counts an error (the
user is at least warned). A false positive is any non-clean answer on a benign file.
Throughput: a torch checkpoint of ``--big-gib`` GiB is written under /tmp, scanned by
each tool, and deleted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.peers import SHORT, TOOLS, Tool
from bench.peers import call as _call
from bench.peers import quiet as _quiet
from scanners.sandbox import scan_path_sandboxed
from tests.scanners.corpus import Sample, build_corpus, write_corpus


def detection(samples: list[tuple[Sample, Path]]) -> dict[str, dict[str, str]]:
    answers: dict[str, dict[str, str]] = {}
    head = f"{'file':38s} {'category':11s} " + " ".join(f"{t:>10s}" for t in TOOLS)
    print(head)
    print("-" * len(head))
    for sample, path in samples:
        row = {name: _call(tool, path) for name, tool in TOOLS.items()}
        answers[sample.name] = row
        cells = " ".join(f"{SHORT[row[t]]:>10s}" for t in TOOLS)
        print(f"{sample.name:38s} {sample.category:11s} {cells}")
    return answers


def summary(samples: list[tuple[Sample, Path]], answers: dict[str, dict[str, str]]) -> None:
    bad = [s for s, _ in samples if s.category == "malicious"]
    broken = [s for s, _ in samples if s.category == "malformed"]
    benign = [s for s, _ in samples if s.category == "benign"]
    third = [s for s, _ in samples if s.category == "third_party"]
    print()
    print(f"{'':44s}" + " ".join(f"{t:>12s}" for t in TOOLS))

    def line(label: str, group: list[Sample], ok: set[str]) -> None:
        cells = []
        for t in TOOLS:
            n = sum(answers[s.name][t] in ok for s in group)
            cells.append(f"{n:>4d}/{len(group):<3d}{100 * n / max(len(group), 1):>3.0f}%")
        print(f"{label:44s}" + " ".join(f"{c:>12s}" for c in cells))

    flagged = {"malicious", "suspicious"}
    line("malicious caught (MAL or sus)", bad, flagged)
    line("malicious caught incl. errors", bad, flagged | {"error", "crash"})
    line("malformed not passed as clean", broken, flagged | {"error", "crash"})
    line("benign false positives (any non-clean)", benign, flagged | {"error", "crash"})
    line("third-party flagged (expected sus)", third, flagged)
    for t in TOOLS:
        if t == "mir":
            continue
        missed_by_peer = [s.name for s in bad if answers[s.name][t] not in flagged]
        mir_catches = [n for n in missed_by_peer if answers[n]["mir"] in flagged]
        print(f"malicious files {t} misses: {len(missed_by_peer)}; mir catches {len(mir_catches)} of them")
    mir_missed = [s.name for s in bad if answers[s.name]["mir"] not in flagged]
    print(f"malicious files mir misses: {mir_missed or 'none'}")
    caught_by_any_peer = [s.name for s in bad if any(answers[s.name][t] in flagged for t in TOOLS if t != "mir")]
    print(f"caught by some peer but not mir: {[n for n in caught_by_any_peer if n in mir_missed] or 'none'}")


def throughput(gib: float, workdir: Path) -> None:
    import torch

    n_tensors = 16
    per = int(gib * (1 << 30) / 4 / n_tensors)
    state = {f"layer{i}.weight": torch.empty(per, dtype=torch.float32).fill_(i) for i in range(n_tensors)}
    runs: dict[str, Tool] = {**TOOLS, "mir (sandboxed)": lambda p: scan_path_sandboxed(p).verdict.value}
    for fmt, legacy in (("zip", False), ("legacy", True)):
        path = workdir / f"big_checkpoint_{fmt}.pt"
        torch.save(state, path, _use_new_zipfile_serialization=not legacy)
        size = path.stat().st_size
        print(f"\nthroughput on a {size / (1 << 30):.2f} GiB torch {fmt} checkpoint ({n_tensors} tensors), "
              "page cache warm")  # fmt: skip
        for name, tool in runs.items():
            t0 = time.perf_counter()
            verdict = _call(tool, path)
            dt = time.perf_counter() - t0
            print(f"  {name:18s} {dt:8.3f} s  {size / dt / (1 << 20):12.0f} MiB/s  verdict={verdict}")
        path.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bomb-mib", type=int, default=300)
    parser.add_argument("--big-gib", type=float, default=2.0)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mir-scan-bench-", dir="/tmp"))
    try:
        with _quiet():
            samples = write_corpus(workdir / "corpus", build_corpus(bomb_mib=args.bomb_mib))
        print(f"corpus: {len(samples)} files in {workdir / 'corpus'}\n")
        answers = detection(samples)
        summary(samples, answers)
        if not args.skip_throughput:
            throughput(args.big_gib, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
