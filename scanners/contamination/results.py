"""What a fingerprint match of a dataset found, and how it becomes a scan report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scanners.report import Finding, Report, Verdict

SCANNER_NAME = "contamination.fingerprint"
EXAMPLE_CHARS = 200


@dataclass(frozen=True, slots=True)
class Source:
    """Labels the index keeps per record: opaque references chosen by the caller (the registry)."""

    dataset_ref: str
    generator_ref: str


@dataclass(frozen=True, slots=True)
class Match:
    """One indexed synthetic record that a queried record matches."""

    record_id: int
    source: Source
    ordinal: int
    similarity: float
    exact: bool
    contained: bool = False  # found by passage containment: ``similarity`` is the share of passages contained


@dataclass(frozen=True, slots=True)
class MatchExample:
    """A matched upload record, shortened, with its best match."""

    location: str
    text: str
    dataset_ref: str
    generator_ref: str
    matched_ordinal: int
    similarity: float
    exact: bool
    contained: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "text": self.text,
            "dataset_ref": self.dataset_ref,
            "generator_ref": self.generator_ref,
            "matched_ordinal": self.matched_ordinal,
            "similarity": round(self.similarity, 4),
            "exact": self.exact,
            "contained": self.contained,
        }


@dataclass(slots=True)
class ContaminationReport:
    """How much of a dataset matches known synthetic data, from which datasets and generators.

    ``matched_fraction`` is over ``scored_records``, the records long enough to
    fingerprint (``FingerprintConfig.min_words``); ``total_records`` counts all
    records read. A record matching several sources counts once in
    ``matched_records`` and once for each distinct dataset and generator.
    """

    total_records: int = 0
    scored_records: int = 0
    matched_records: int = 0
    exact_records: int = 0
    per_dataset: dict[str, int] = field(default_factory=dict)
    per_generator: dict[str, int] = field(default_factory=dict)
    per_source: dict[Source, int] = field(default_factory=dict)
    examples: list[MatchExample] = field(default_factory=list)

    @property
    def matched_fraction(self) -> float:
        return self.matched_records / self.scored_records if self.scored_records else 0.0

    @property
    def unscored_records(self) -> int:
        return self.total_records - self.scored_records

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_records": self.total_records,
            "scored_records": self.scored_records,
            "matched_records": self.matched_records,
            "exact_records": self.exact_records,
            "matched_fraction": self.matched_fraction,
            "per_dataset": dict(sorted(self.per_dataset.items())),
            "per_generator": dict(sorted(self.per_generator.items())),
            "per_source": [
                {"dataset_ref": s.dataset_ref, "generator_ref": s.generator_ref, "records": n}
                for s, n in sorted(self.per_source.items(), key=lambda kv: (kv[0].dataset_ref, kv[0].generator_ref))
            ],
            "examples": [e.to_dict() for e in self.examples],
        }

    def to_report(self, *, max_fraction: float = 0.0, path: str | None = None) -> Report:
        """A scan report: ``suspicious`` when more than ``max_fraction`` of scored records match.

        Fail closed: a dataset with no record long enough to fingerprint gets
        ``error`` (nothing could be assessed), never ``clean``. A match is never
        ``malicious`` on its own; what fraction is acceptable is policy.
        """
        report = Report(scanner=SCANNER_NAME, format="text-records", path=path)
        if self.scored_records == 0:
            what = "no records" if self.total_records == 0 else f"none of {self.total_records} records"
            report.add(Finding(Verdict.ERROR, f"{what} long enough to fingerprint: contamination not assessed"))
            return report
        if self.matched_records and self.matched_fraction > max_fraction:
            sources = ", ".join(f"{d} ({n})" for d, n in sorted(self.per_dataset.items(), key=lambda kv: -kv[1])[:5])
            generators = ", ".join(sorted(self.per_generator))
            report.add(
                Finding(
                    Verdict.SUSPICIOUS,
                    f"{self.matched_records} of {self.scored_records} records ({self.matched_fraction:.2%}) match "
                    f"known synthetic data (limit {max_fraction:.2%}); datasets: {sources}; generators: {generators}",
                )
            )
            for example in self.examples[:5]:
                kind = ("exact copy" if example.exact
                        else f"passages ({example.similarity:.0%}) contained in" if example.contained
                        else f"near copy (Jaccard ~{example.similarity:.2f})")
                report.add(
                    Finding(
                        Verdict.SUSPICIOUS,
                        f"{kind} record {example.matched_ordinal} of {example.dataset_ref}" if example.contained
                        else f"{kind} of record {example.matched_ordinal} of {example.dataset_ref}",
                        member=example.location,
                    )
                )
        elif self.matched_records:
            report.add(
                Finding(
                    Verdict.CLEAN,
                    f"{self.matched_records} of {self.scored_records} records ({self.matched_fraction:.2%}) match "
                    f"known synthetic data, within the limit of {max_fraction:.2%}",
                )
            )
        if self.unscored_records:
            report.add(
                Finding(
                    Verdict.CLEAN,
                    f"{self.unscored_records} of {self.total_records} records too short to fingerprint",
                )
            )
        return report
