"""Scan reports as SARIF 2.1.0, the format CI code-scanning views (GitHub, GitLab, Azure DevOps) read.

One run, one rule per verdict (``mir/malicious``, ``mir/suspicious``, ``mir/error``); each finding becomes a
result on its file, with the archive member and byte offset in the message and, when known, the byte offset as
the region. Clean files produce no result. Written by hand: SARIF is plain JSON and the official object model
packages would add a dependency for a dozen fields.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scanners.report import Finding, Report, Verdict

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {Verdict.MALICIOUS: "error", Verdict.SUSPICIOUS: "warning", Verdict.ERROR: "warning"}
_RULES = {
    Verdict.MALICIOUS: "The file runs code when it is loaded (or is built to exhaust the loader).",
    Verdict.SUSPICIOUS: "Loading the file imports or calls code outside the allowlist.",
    Verdict.ERROR: "The file could not be analysed (malformed, truncated, unsupported or over a limit).",
}


def _uri(path: str | None, base: Path | None) -> str:
    if not path:
        return "unknown"
    if base is not None:
        try:
            return Path(os.path.abspath(path)).relative_to(base.resolve()).as_posix()
        except ValueError:
            pass
    return Path(path).as_posix()


def _result(report: Report, finding: Finding, base: Path | None) -> dict[str, Any]:
    where = " ".join(x for x in (finding.member or "", f"@{finding.offset}" if finding.offset is not None else "") if x)
    location: dict[str, Any] = {"artifactLocation": {"uri": _uri(report.path, base)}}
    if finding.offset is not None and not finding.member:
        location["region"] = {"byteOffset": finding.offset}
    result: dict[str, Any] = {
        "ruleId": f"mir/{finding.severity.value}",
        "level": _LEVEL.get(finding.severity, "note"),
        "message": {"text": f"{where + ': ' if where else ''}{finding.message}"},
        "locations": [{"physicalLocation": location}],
    }
    if finding.symbol:
        result["properties"] = {"symbol": finding.symbol, "format": report.format}
    return result


def to_sarif(reports: Sequence[Report], *, tool_version: str, base: Path | None = None) -> dict[str, Any]:
    """One SARIF log for ``reports``; paths are made relative to ``base`` (the repository root) when inside it."""
    rules = [
        {"id": f"mir/{verdict.value}", "name": verdict.value.capitalize(), "shortDescription": {"text": text},
         "defaultConfiguration": {"level": _LEVEL[verdict]}}
        for verdict, text in _RULES.items()
    ]
    results = [
        _result(report, finding, base)
        for report in reports
        for finding in report.findings
        if finding.severity is not Verdict.CLEAN
    ]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "mir scan", "version": tool_version, "rules": rules}},
            "results": results,
        }],
    }
