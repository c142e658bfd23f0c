"""Scan reports: a verdict plus the findings that justify it.

Verdicts are ordered by severity. ``error`` ranks above ``suspicious`` for the
purpose of "is it clean?" (it is not), but a combined report keeps the worst
*known-bad* verdict visible: malicious beats error beats suspicious beats clean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    CLEAN = "clean"
    SUSPICIOUS = "suspicious"
    ERROR = "error"
    MALICIOUS = "malicious"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def is_clean(self) -> bool:
        return self is Verdict.CLEAN


_RANK = {Verdict.CLEAN: 0, Verdict.SUSPICIOUS: 1, Verdict.ERROR: 2, Verdict.MALICIOUS: 3}


def worst(verdicts: list[Verdict]) -> Verdict:
    """The most severe verdict; an empty list is clean."""
    return max(verdicts, key=lambda v: v.rank, default=Verdict.CLEAN)


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason behind a verdict: where it was found and why it matters."""

    severity: Verdict
    message: str
    member: str | None = None
    offset: int | None = None
    symbol: str | None = None
    rule: str | None = None  # a stable name for the kind of finding, where a policy may act on it

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity.value,
            "message": self.message,
            "member": self.member,
            "offset": self.offset,
            "symbol": self.symbol,
            "rule": self.rule,
        }


@dataclass(slots=True)
class Report:
    """A scanner's verdict on one file (or blob), with the detected format."""

    scanner: str
    format: str
    verdict: Verdict = Verdict.CLEAN
    findings: list[Finding] = field(default_factory=list)
    path: str | None = None

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)
        self.verdict = worst([self.verdict, finding.severity])

    def to_dict(self) -> dict[str, Any]:
        return {
            "scanner": self.scanner,
            "format": self.format,
            "verdict": self.verdict.value,
            "path": self.path,
            "findings": [f.to_dict() for f in self.findings],
        }


def finding_from_dict(data: dict[str, Any]) -> Finding:
    """Inverse of ``Finding.to_dict`` (for reports that cross a process boundary); ValueError if malformed."""
    try:
        offset = data.get("offset")
        if offset is not None and (not isinstance(offset, int) or isinstance(offset, bool)):
            raise ValueError("offset must be an integer or null")
        for key in ("member", "symbol", "rule"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise ValueError(f"{key} must be a string or null")
        if not isinstance(data["message"], str):
            raise ValueError("message must be a string")
        return Finding(Verdict(data["severity"]), data["message"], data.get("member"), offset, data.get("symbol"),
                       data.get("rule"))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed finding: {exc!r}") from None


def report_from_dict(data: dict[str, Any]) -> Report:
    """Inverse of ``Report.to_dict``; ValueError if malformed. The verdict is recomputed from the findings
    and never allowed to be better than the one recorded."""
    try:
        if not isinstance(data["scanner"], str) or not isinstance(data["format"], str):
            raise ValueError("scanner and format must be strings")
        path = data.get("path")
        if path is not None and not isinstance(path, str):
            raise ValueError("path must be a string or null")
        report = Report(scanner=data["scanner"], format=data["format"], path=path)
        findings = data["findings"]
        if not isinstance(findings, list):
            raise ValueError("findings must be a list")
        for item in findings:
            if not isinstance(item, dict):
                raise ValueError("each finding must be an object")
            report.add(finding_from_dict(item))
        report.verdict = worst([report.verdict, Verdict(data["verdict"])])
        return report
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed report: {exc!r}") from None
