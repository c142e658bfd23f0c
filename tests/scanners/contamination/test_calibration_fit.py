"""Fitting a detector calibration from stored scores, and the cached form of a text's statistics (no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scanners.contamination.detector import DEFAULT_SCORE, SCORE_NAMES, TextScore, estimate_from_scores, fit_calibration
from scanners.report import Verdict


def test_fit_measures_fpr_and_tpr_from_scores() -> None:
    human = np.array([*np.linspace(0.0, 1.0, 20), math.nan])  # the nan (an unscored text) is not counted
    synthetic = np.array([0.5, 0.97, 1.2, 1.5, 2.0])
    cal = fit_calibration(human, synthetic, score="log_likelihood", target_fpr=0.05, model="m")
    assert cal.n_human == 20 and cal.n_synthetic == 5 and cal.fpr == pytest.approx(0.05)
    assert cal.threshold == pytest.approx(human[18]) and cal.tpr == pytest.approx(0.8)
    estimate = estimate_from_scores(np.array([0.1, 0.2, 1.6, 1.7]), cal)
    assert estimate.corrected and estimate.estimate == pytest.approx((0.5 - 0.05) / (0.8 - 0.05))
    note = estimate.to_report(max_fraction=1.0, note="calibrated on this namespace's labelled datasets")
    assert note.verdict is Verdict.CLEAN and "TPR 80.0%; calibrated on this namespace's" in note.findings[0].message
    without = fit_calibration(human, None, score="lrr")
    assert without.tpr is None and without.n_synthetic == 0
    assert fit_calibration(human, np.array([math.nan]), score="lrr").tpr is None  # nothing scored: no TPR
    with pytest.raises(ValueError, match="unknown score"):
        fit_calibration(human, synthetic, score="magic")
    with pytest.raises(ValueError, match="finite negative"):
        fit_calibration(np.array([math.nan]), synthetic)


def test_text_scores_round_trip_through_rows() -> None:
    score = TextScore(12, -2.5, 1.25, 3.0, 0.75)
    again = TextScore.from_row(score.to_row())
    assert again == score and all(again.feature(n) == score.feature(n) for n in SCORE_NAMES)
    with pytest.raises(ValueError, match="five values"):
        TextScore.from_row([1.0, 2.0])
    assert DEFAULT_SCORE in SCORE_NAMES
