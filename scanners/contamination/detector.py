"""Layer 3: zero-shot statistical detection of model-generated text with a causal LM.

One forward pass per batch gives, for every token, its log-probability, its
rank among the vocabulary and the predictive distribution's entropy and
variance. From those each text gets:

* ``mean_log_likelihood`` — machine text is more probable under a similar model;
* ``mean_log_rank`` — and its tokens rank nearer the top;
* ``lrr`` — log-likelihood / log-rank ratio (Su et al., 2023);
* ``fast_detectgpt`` — the analytic sampling discrepancy of Fast-DetectGPT
  (Bao et al., 2024) with the same model sampling and scoring: how far the
  text's log-likelihood sits above what the model's own samples would score,
  in standard deviations;
* ``entropy_ratio`` — log-perplexity over mean entropy, Binoculars' statistic
  (Hans et al., 2024) with one model as both observer and performer.

Every feature is oriented so that higher means "more likely synthetic". A
threshold is calibrated on known human text for a target false-positive rate;
the dataset-level estimate scores a uniform random sample (reservoir sampling,
so the dataset streams) and corrects the flagged proportion for the detector's
error rates (Rogan-Gladen), with a Wilson interval carried through the same
correction. The verdict is at most ``suspicious``: a statistical score is
never proof.

torch is imported lazily (see ``lm.py``).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from scanners.contamination.lm import LoadedLM, load_causal_lm, padding_side, require_torch
from scanners.contamination.records import Record
from scanners.contamination.stats import (
    corrected_prevalence,
    rate_above,
    threshold_for_fpr,
    wilson_interval,
)
from scanners.report import Finding, Report, Verdict

SCANNER_NAME = "contamination.zero-shot"
SCORE_NAMES = ("fast_detectgpt", "lrr", "log_likelihood", "log_rank", "entropy_ratio")
# Chosen by measurement (bench/detector_calibration_bench.py: GPT-3.5/4 essays vs WikiText-2 paragraphs, SmolLM2-135M,
# 96 tokens): log-likelihood AUROC 0.962 and TPR 0.51 at 1 % FPR, against 0.840 and 0.21 for fast_detectgpt. It
# needs an in-domain calibration (a threshold set on other human text over-flags badly); see registry's fallback.
DEFAULT_SCORE = "log_likelihood"


@dataclass(frozen=True, slots=True)
class TextScore:
    """Per-text token statistics (``n_tokens`` scored positions; 0 when the text is too short)."""

    n_tokens: int
    mean_log_likelihood: float
    mean_log_rank: float
    mean_entropy: float
    fast_detectgpt: float

    def feature(self, name: str) -> float:
        """The named detection score, oriented so that higher means more likely synthetic (nan if unscored)."""
        if self.n_tokens == 0:
            return math.nan
        if name == "fast_detectgpt":
            return self.fast_detectgpt
        if name == "log_likelihood":
            return self.mean_log_likelihood
        if name == "log_rank":
            return -self.mean_log_rank
        if name == "lrr":
            return -self.mean_log_likelihood / max(self.mean_log_rank, 1e-6)
        if name == "entropy_ratio":
            return self.mean_log_likelihood / max(self.mean_entropy, 1e-6)  # -(log-ppl / entropy)
        raise ValueError(f"unknown score {name!r}; choose one of {', '.join(SCORE_NAMES)}")

    def to_row(self) -> list[float]:
        """The statistics as a JSON-friendly list (for caching scores; ``from_row`` reads it back)."""
        return [float(self.n_tokens), self.mean_log_likelihood, self.mean_log_rank, self.mean_entropy,
                self.fast_detectgpt]

    @classmethod
    def from_row(cls, row: Sequence[float]) -> TextScore:
        if len(row) != 5:
            raise ValueError("a cached text score has five values")
        n, ll, lr, ent, fdg = (float(x) for x in row)
        return cls(int(n), ll, lr, ent, fdg)


@dataclass(frozen=True, slots=True)
class Calibration:
    """A flagging threshold for one score, with the error rates measured when it was set."""

    score: str
    threshold: float
    fpr: float
    tpr: float | None
    n_human: int
    n_synthetic: int
    model: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        calibration = cls(**data)
        if calibration.score not in SCORE_NAMES or not math.isfinite(calibration.threshold):
            raise ValueError("calibration names an unknown score or has a non-finite threshold")
        return calibration


@dataclass(frozen=True, slots=True)
class FractionEstimate:
    """Estimated synthetic fraction of a dataset from a random sample."""

    estimate: float
    low: float
    high: float
    confidence: float
    flagged: int
    scored: int
    sampled: int
    total_seen: int
    corrected: bool
    calibration: Calibration

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["calibration"] = self.calibration.to_dict()
        return data

    def to_report(
        self, *, max_fraction: float = 0.1, conservative: bool = False, path: str | None = None, note: str = ""
    ) -> Report:
        """``suspicious`` when the estimate exceeds ``max_fraction``; ``error`` when nothing was scored.

        The point estimate is compared by default; ``conservative`` compares the
        interval's lower bound instead, so that a small or noisy sample flags a
        dataset only when even the optimistic reading exceeds the limit. ``note``
        (where the calibration came from) is added to the summary.
        """
        report = Report(scanner=SCANNER_NAME, format="text-records", path=path)
        if self.scored == 0:
            report.add(Finding(Verdict.ERROR, "no text in the sample was long enough to score"))
            return report
        summary = (
            f"estimated synthetic fraction {self.estimate:.1%} "
            f"({self.confidence:.0%} CI {self.low:.1%}-{self.high:.1%}; {self.flagged} of {self.scored} sampled "
            f"texts flagged by {self.calibration.score} at FPR {self.calibration.fpr:.1%}"
            + (f", TPR {self.calibration.tpr:.1%}" if self.calibration.tpr is not None else ", TPR unknown")
            + (f"; {note}" if note else "")
            + ")"
        )
        compared = self.low if conservative else self.estimate
        if compared > max_fraction:
            what = "lower bound" if conservative else "estimate"
            report.add(Finding(Verdict.SUSPICIOUS, f"{summary}: {what} exceeds the limit {max_fraction:.1%}"))
        else:
            report.add(Finding(Verdict.CLEAN, summary))
        return report


class ZeroShotDetector:
    """Scores texts with a causal LM from a local directory (safetensors or GGUF).

    Pass ``model_dir`` (any transformers causal LM directory, or a GGUF file;
    ``cache_dir`` keeps a converted copy of GGUF models) or an already loaded
    ``lm``. ``device="auto"`` uses CUDA when present. Texts are truncated to
    ``max_tokens`` tokens and scored ``batch_size`` at a time.
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        gguf_file: str | None = None,
        device: str = "auto",
        batch_size: int = 8,
        max_tokens: int = 128,
        lm: LoadedLM | None = None,
        cache_dir: str | Path | None = None,
    ) -> None:
        if (model_dir is None) == (lm is None):
            raise ValueError("pass exactly one of model_dir or lm")
        if batch_size < 1 or max_tokens < 2:
            raise ValueError("batch_size must be >= 1 and max_tokens >= 2")
        if lm is None:
            assert model_dir is not None
            lm = load_causal_lm(model_dir, gguf_file=gguf_file, device=device, cache_dir=cache_dir)
        self.lm = lm
        self.batch_size = batch_size
        context = getattr(lm.model.config, "max_position_embeddings", None)
        self.max_tokens = min(max_tokens, context) if isinstance(context, int) and context > 1 else max_tokens
        self.tokens_scored = 0
        self.seconds = 0.0

    @property
    def device(self) -> str:
        return self.lm.device

    def score_texts(self, texts: Iterable[str]) -> list[TextScore]:
        """Token statistics for each text (truncated to ``max_tokens`` tokens), batched."""
        items = list(texts)
        out: list[TextScore] = []
        for start in range(0, len(items), self.batch_size):
            out.extend(self._score_batch(items[start : start + self.batch_size]))
        return out

    def scores(self, texts: Iterable[str], score: str = DEFAULT_SCORE) -> NDArray[np.float64]:
        """One oriented detection score per text (nan where a text has fewer than two tokens)."""
        return np.array([s.feature(score) for s in self.score_texts(texts)], dtype=np.float64)

    def _score_batch(self, texts: list[str]) -> list[TextScore]:
        torch = require_torch()
        tok = self.lm.tokenizer
        started = time.perf_counter()
        with padding_side(tok, "right"), torch.inference_mode():
            enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_tokens)
            input_ids = enc["input_ids"].to(self.lm.device)
            attention = enc["attention_mask"].to(self.lm.device)
            if input_ids.shape[1] < 2:
                return [TextScore(0, math.nan, math.nan, math.nan, math.nan) for _ in texts]
            logits = self.lm.model(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
            labels = input_ids[:, 1:]
            mask = attention[:, 1:].float()
            logp = torch.log_softmax(logits, dim=-1)
            del logits
            token_ll = logp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
            rank = (logp > token_ll.unsqueeze(-1)).sum(-1).float() + 1.0
            plogp = logp.exp() * logp
            entropy = -plogp.sum(-1)
            second = (plogp * logp).sum(-1)  # E[(log p)^2]
            variance = (second - entropy * entropy).clamp_min(0.0)
            del logp, plogp
            n = mask.sum(-1)
            safe_n = n.clamp_min(1.0)
            sum_ll = (token_ll * mask).sum(-1)
            mean_ll = sum_ll / safe_n
            mean_log_rank = (rank.log() * mask).sum(-1) / safe_n
            mean_entropy = (entropy * mask).sum(-1) / safe_n
            discrepancy = (sum_ll + (entropy * mask).sum(-1)) / (variance * mask).sum(-1).clamp_min(1e-6).sqrt()
            rows = torch.stack([n, mean_ll, mean_log_rank, mean_entropy, discrepancy], dim=-1).cpu().tolist()
        self.seconds += time.perf_counter() - started
        self.tokens_scored += int(attention.sum().item())
        result = []
        for count, ll, lr, ent, fdg in rows:
            if count < 1:
                result.append(TextScore(0, math.nan, math.nan, math.nan, math.nan))
            else:
                result.append(TextScore(int(count), ll, lr, ent, fdg))
        return result

    def calibrate(
        self,
        human_texts: Sequence[str],
        synthetic_texts: Sequence[str] | None = None,
        *,
        target_fpr: float = 0.01,
        score: str = DEFAULT_SCORE,
    ) -> Calibration:
        """Set the flagging threshold on known human text for ``target_fpr``; measure TPR on synthetic text if given.

        Without synthetic texts the TPR is unknown and fraction estimates are
        the raw flagged proportion (a lower bound when the TPR is below one).
        """
        human = self.scores(human_texts, score)
        synthetic = self.scores(synthetic_texts, score) if synthetic_texts else None
        return fit_calibration(human, synthetic, score=score, target_fpr=target_fpr, model=self.lm.source)

    def estimate_synthetic_fraction(
        self,
        records: Iterable[Record | str],
        calibration: Calibration,
        *,
        sample_size: int = 200,
        seed: int = 0,
        confidence: float = 0.95,
    ) -> FractionEstimate:
        """Estimate the synthetic fraction of a (streamed) dataset from a uniform sample of ``sample_size`` records.

        The flagged proportion p among scored sample texts gets a Wilson
        interval; when the calibration measured a TPR above its FPR, the
        estimate and both bounds are mapped through the Rogan-Gladen correction
        (p - FPR) / (TPR - FPR), clipped to [0, 1]. The interval covers sampling
        error only, not the uncertainty of TPR/FPR themselves.
        """
        sample, seen = reservoir_sample(records, sample_size, seed)
        texts = [r.text if isinstance(r, Record) else r for r in sample]
        scores = self.scores(texts, calibration.score) if texts else np.empty(0)
        return estimate_from_scores(scores, calibration, confidence=confidence, total_seen=seen)


def fit_calibration(
    human: ArrayLike,
    synthetic: ArrayLike | None = None,
    *,
    score: str = DEFAULT_SCORE,
    target_fpr: float = 0.01,
    model: str = "",
) -> Calibration:
    """A calibration from already computed scores of known human (and, if given, synthetic) texts; nan = unscored.

    The threshold keeps the false-positive rate on ``human`` at most ``target_fpr``; the TPR is measured on
    ``synthetic`` (None when there is none, and then estimates are the raw flagged share).
    """
    if score not in SCORE_NAMES:
        raise ValueError(f"unknown score {score!r}; choose one of {', '.join(SCORE_NAMES)}")
    human_scores = np.asarray(human, dtype=np.float64)
    threshold = threshold_for_fpr(human_scores, target_fpr)
    tpr = None
    n_syn = 0
    if synthetic is not None:
        synthetic_scores = np.asarray(synthetic, dtype=np.float64)
        n_syn = int(np.isfinite(synthetic_scores).sum())
        if n_syn:
            tpr = rate_above(synthetic_scores, threshold)
    return Calibration(
        score=score,
        threshold=threshold,
        fpr=rate_above(human_scores, threshold),
        tpr=tpr,
        n_human=int(np.isfinite(human_scores).sum()),
        n_synthetic=n_syn,
        model=model,
    )


def estimate_from_scores(
    scores: NDArray[np.float64],
    calibration: Calibration,
    *,
    confidence: float = 0.95,
    total_seen: int | None = None,
) -> FractionEstimate:
    """The estimate of ``estimate_synthetic_fraction`` from already computed sample scores (nan = unscored)."""
    finite = scores[np.isfinite(scores)]
    flagged = int((finite > calibration.threshold).sum())
    scored = int(finite.size)
    rate = flagged / scored if scored else 0.0
    low, high = wilson_interval(flagged, scored, confidence)
    corrected = calibration.tpr is not None and calibration.tpr > calibration.fpr
    if corrected:
        tpr, fpr = float(calibration.tpr), calibration.fpr  # type: ignore[arg-type]
        rate, low, high = (corrected_prevalence(x, tpr, fpr) for x in (rate, low, high))
    return FractionEstimate(
        estimate=rate,
        low=low,
        high=high,
        confidence=confidence,
        flagged=flagged,
        scored=scored,
        sampled=int(scores.size),
        total_seen=int(scores.size) if total_seen is None else total_seen,
        corrected=corrected,
        calibration=calibration,
    )


def reservoir_sample(items: Iterable[Record | str], k: int, seed: int = 0) -> tuple[list[Record | str], int]:
    """A uniform random sample of ``k`` items from a stream of unknown length (Algorithm R), and the count seen."""
    if k < 1:
        raise ValueError("sample size must be positive")
    rng = random.Random(seed)  # noqa: S311 - sampling, not security
    sample: list[Record | str] = []
    seen = 0
    for item in items:
        seen += 1
        if len(sample) < k:
            sample.append(item)
        else:
            j = rng.randrange(seen)
            if j < k:
                sample[j] = item
    return sample, seen
