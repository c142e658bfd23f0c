"""KGW watermark detection (Kirchenbauer et al., 2023) for generators that declare a watermark.

A generating model registered with a ``WatermarkingConfig`` (greenlist_ratio
= gamma, bias = delta, hashing_key, seeding_scheme, context_width) biases its
sampling towards a pseudo-random "green" part of the vocabulary seeded by the
preceding tokens. Re-tokenising a text and counting green tokens gives a
one-proportion z-test: z = (G - gamma*T) / sqrt(T*gamma*(1-gamma)).

This wraps transformers' ``WatermarkDetector``, which reproduces exactly the
greenlists of ``generate(..., watermarking_config=...)`` and so fits; what it
lacks, added here: text input, per-text results for a batch of texts of
different lengths, a pooled dataset-level z over all tokens, and a scan
report. Greenlists come from ``torch.randperm`` on the detector's device, and
CPU and CUDA generators differ: detect on the device type that generated
(``device``, default CPU).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

from scanners.contamination.errors import ModelLoadError
from scanners.contamination.lm import LoadedLM, require_torch
from scanners.report import Finding, Report, Verdict

SCANNER_NAME = "contamination.watermark"
WATERMARK_KEYS = frozenset({"greenlist_ratio", "bias", "hashing_key", "seeding_scheme", "context_width"})
DEFAULT_Z_THRESHOLD = 4.0


@dataclass(frozen=True, slots=True)
class WatermarkResult:
    """Green-token test of one text."""

    tokens_scored: int
    green_tokens: int
    z_score: float
    p_value: float
    flagged: bool


@dataclass(slots=True)
class WatermarkScan:
    """Per-text results and the pooled test over every scored token of a dataset sample."""

    generator_ref: str
    greenlist_ratio: float
    z_threshold: float
    results: list[WatermarkResult | None] = field(default_factory=list)

    @property
    def scored(self) -> list[WatermarkResult]:
        return [r for r in self.results if r is not None]

    @property
    def flagged_fraction(self) -> float:
        scored = self.scored
        return sum(r.flagged for r in scored) / len(scored) if scored else 0.0

    @property
    def pooled_z(self) -> float:
        tokens = sum(r.tokens_scored for r in self.scored)
        green = sum(r.green_tokens for r in self.scored)
        return kgw_z(green, tokens, self.greenlist_ratio)

    def to_report(self, *, max_fraction: float = 0.0, path: str | None = None) -> Report:
        """``suspicious`` when the flagged fraction exceeds ``max_fraction`` or the pooled z passes the threshold."""
        report = Report(scanner=SCANNER_NAME, format="text-records", path=path)
        scored = self.scored
        if not scored:
            report.add(Finding(Verdict.ERROR, "no text long enough for the watermark test"))
            return report
        flagged = sum(r.flagged for r in scored)
        summary = (
            f"watermark of {self.generator_ref}: {flagged} of {len(scored)} texts with z > {self.z_threshold:g}, "
            f"pooled z = {self.pooled_z:.2f}"
        )
        if self.flagged_fraction > max_fraction or self.pooled_z > self.z_threshold:
            report.add(Finding(Verdict.SUSPICIOUS, summary))
        else:
            report.add(Finding(Verdict.CLEAN, summary))
        return report


def kgw_z(green: int, tokens: int, gamma: float) -> float:
    """The KGW one-proportion z statistic (nan without tokens)."""
    if tokens <= 0:
        return math.nan
    return (green - gamma * tokens) / math.sqrt(tokens * gamma * (1.0 - gamma))


def validate_watermark_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Check a declared watermark configuration (transformers ``WatermarkingConfig`` keys)."""
    unknown = set(config) - WATERMARK_KEYS
    if unknown:
        raise ValueError(f"unknown watermark keys {sorted(unknown)}; allowed: {sorted(WATERMARK_KEYS)}")
    from transformers import WatermarkingConfig

    wm: Any = WatermarkingConfig(**dict(config))
    wm.validate()
    if not 0.0 < wm.greenlist_ratio < 1.0:
        raise ValueError("greenlist_ratio must be strictly between 0 and 1")
    return {key: getattr(wm, key) for key in sorted(WATERMARK_KEYS)}


class KGWWatermarkDetector:
    """Detects one generator's declared KGW watermark in texts, using that generator's tokenizer."""

    def __init__(
        self,
        lm: LoadedLM,
        watermarking_config: Mapping[str, Any],
        *,
        generator_ref: str = "",
        device: str = "cpu",
        z_threshold: float = DEFAULT_Z_THRESHOLD,
        ignore_repeated_ngrams: bool = False,
    ) -> None:
        require_torch()
        from transformers import WatermarkDetector

        self.config = validate_watermark_config(watermarking_config)
        self.tokenizer = lm.tokenizer
        self.generator_ref = generator_ref or lm.source
        self.device = device
        self.z_threshold = z_threshold
        try:
            self._detector = WatermarkDetector(
                model_config=lm.model.config,
                device=device,
                watermarking_config=self.config,
                ignore_repeated_ngrams=ignore_repeated_ngrams,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"cannot build a watermark detector for {self.generator_ref}: {exc}") from exc
        self._min_tokens = int(self.config["context_width"]) + 1

    def detect(self, texts: Iterable[str]) -> list[WatermarkResult | None]:
        """One result per text; None for a text with too few tokens to test."""
        torch = require_torch()
        gamma = float(self.config["greenlist_ratio"])
        out: list[WatermarkResult | None] = []
        for text in texts:
            ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].to(self.device)
            if ids.shape[1] < self._min_tokens:
                out.append(None)
                continue
            with torch.inference_mode():
                res: Any = self._detector(ids, z_threshold=self.z_threshold, return_dict=True)
            tokens = int(res.num_tokens_scored[0])
            green = int(res.num_green_tokens[0])
            z = kgw_z(green, tokens, gamma)
            out.append(
                WatermarkResult(
                    tokens_scored=tokens,
                    green_tokens=green,
                    z_score=z,
                    p_value=1.0 - NormalDist().cdf(z),
                    flagged=z > self.z_threshold,
                )
            )
        return out

    def scan(self, texts: Iterable[str]) -> WatermarkScan:
        return WatermarkScan(
            generator_ref=self.generator_ref,
            greenlist_ratio=float(self.config["greenlist_ratio"]),
            z_threshold=self.z_threshold,
            results=self.detect(texts),
        )
