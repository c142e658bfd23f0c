"""Small statistics for the detectors: thresholds, AUROC, Wilson intervals, prevalence correction.

Written here rather than imported from scipy/scikit-learn because the scanners
package must stay light (stdlib and numpy), and each is a few lines.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _finite(values: ArrayLike) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    return array[np.isfinite(array)]


def threshold_for_fpr(negatives: ArrayLike, fpr: float) -> float:
    """The smallest threshold ``t`` such that at most ``fpr`` of ``negatives`` score strictly above it.

    Scores are "higher means more likely synthetic"; a text is flagged when its
    score is > t. With n negatives the achievable false-positive rates are
    multiples of 1/n, so the returned threshold is conservative.
    """
    if not 0.0 <= fpr < 1.0:
        raise ValueError("fpr must be in [0, 1)")
    neg = np.sort(_finite(negatives))[::-1]
    if neg.size == 0:
        raise ValueError("need at least one finite negative score")
    k = math.floor(fpr * neg.size + 1e-9)
    return float(neg[min(k, neg.size - 1)])


def rate_above(scores: ArrayLike, threshold: float) -> float:
    values = _finite(scores)
    return float(np.mean(values > threshold)) if values.size else float("nan")


def auroc(positives: ArrayLike, negatives: ArrayLike) -> float:
    """Area under the ROC curve (Mann-Whitney U with ties counted as one half)."""
    pos, neg = _finite(positives), _finite(negatives)
    if pos.size == 0 or neg.size == 0:
        raise ValueError("need positive and negative scores")
    combined = np.concatenate([pos, neg])
    _, inverse, counts = np.unique(combined, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts).astype(np.float64)
    ranks = ((upper - counts + 1.0 + upper) / 2.0)[inverse]  # average rank within each group of ties
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def tpr_at_fpr(positives: ArrayLike, negatives: ArrayLike, fpr: float) -> float:
    """True-positive rate at the threshold that keeps the false-positive rate at most ``fpr``."""
    return rate_above(positives, threshold_for_fpr(negatives, fpr))


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (good coverage for small n and p near 0 or 1)."""
    if trials <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= trials:
        raise ValueError("successes must be in [0, trials]")
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def corrected_prevalence(flagged_rate: float, tpr: float, fpr: float) -> float:
    """Rogan-Gladen estimate of the true synthetic fraction from the flagged rate, clipped to [0, 1].

    E[flagged] = pi * TPR + (1 - pi) * FPR, so pi = (flagged - FPR) / (TPR - FPR).
    """
    if tpr <= fpr:
        raise ValueError("the detector's TPR must exceed its FPR to correct the flagged rate")
    return min(1.0, max(0.0, (flagged_rate - fpr) / (tpr - fpr)))
