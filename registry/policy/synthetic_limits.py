"""The synthetic-data policy check, as a pure function of a synthetic summary (see ``registry.synthetic``).

Pure so that the registry (``registry.policy``) and an offline verifier
(``registry.client.bundles``, reading the summary the registry attested) decide
the same way. Fail closed throughout:

* ``max_synthetic_fraction``: the lineage share at depth >= 1 *plus* the share
  of unknown provenance (it could be synthetic) must not exceed the limit;
  for a dataset, the fingerprint-matched fraction and any statistical estimate
  must not exceed it either, and a dataset whose contamination analysis is
  pending, failed or missing does not pass.
* ``max_recursion_depth``: the deepest known depth must not exceed the limit,
  and a depth that is only a lower bound or any unknown share fails (the
  depth cannot be shown to be within the limit).
"""

from __future__ import annotations

from typing import Any

CHECK = "synthetic data"
_TOL = 1e-9


def check_limits(
    summary: dict[str, Any] | None, *, max_fraction: float | None, max_depth: int | None
) -> tuple[bool, str] | None:
    """(ok, detail) for the policy's synthetic limits, or None when the policy sets none."""
    if max_fraction is None and max_depth is None:
        return None
    if not isinstance(summary, dict) or not isinstance(summary.get("lineage"), dict):
        return False, "no synthetic-data summary is available for this version"
    lin = summary["lineage"]
    problems: list[str] = []
    facts: list[str] = []
    syn, unk = float(lin.get("synthetic_fraction", 1.0)), float(lin.get("unknown_fraction", 1.0))
    basis = lin.get("basis", "data")
    if max_fraction is not None:
        counted = syn + unk
        text = (f"{basis} {syn:.1%} synthetic + {unk:.1%} unknown provenance (counted as synthetic, fail closed) "
                f"= {counted:.1%}")
        if counted > max_fraction + _TOL:
            problems.append(f"{text} exceeds the limit {max_fraction:.1%}")
        else:
            facts.append(f"{text} within the limit {max_fraction:.1%}")
        if summary.get("kind") == "dataset":
            _fingerprint(summary.get("fingerprint"), max_fraction, problems, facts)
    if max_depth is not None:
        depth = lin.get("max_depth")
        shown = "none" if depth is None else f"{'>=' if lin.get('depth_lower_bound') else ''}{depth}"
        if depth is not None and depth > max_depth:
            problems.append(f"recursion depth {shown} exceeds the limit {max_depth}")
        elif lin.get("depth_lower_bound"):
            problems.append(f"recursion depth {shown} is only a lower bound (a generator's training data is "
                            f"unknown), so the limit {max_depth} cannot be shown to hold")
        elif unk > _TOL:
            problems.append(f"{unk:.1%} of the {basis} has unknown provenance, so the recursion depth limit "
                            f"{max_depth} cannot be shown to hold")
        else:
            facts.append(f"recursion depth {shown} within the limit {max_depth}")
    if problems:
        return False, "; ".join(problems)
    return True, "; ".join(facts)


def _fingerprint(fp: Any, limit: float, problems: list[str], facts: list[str]) -> None:
    if not isinstance(fp, dict) or fp.get("status") in (None, "pending", "not analysed"):
        problems.append("the dataset's contamination analysis has not finished (fail closed)")
        return
    if fp.get("status") == "error" or fp.get("matched_fraction") is None:
        problems.append(f"the dataset's contamination analysis failed: {fp.get('error') or 'no result'}")
        return
    matched = float(fp["matched_fraction"])
    gens = ", ".join(sorted(fp.get("per_generator") or {})) or "none"
    if matched > limit + _TOL:
        problems.append(f"{matched:.1%} of records match known synthetic data (generators: {gens}), "
                        f"over the limit {limit:.1%}")
    else:
        facts.append(f"fingerprint match {matched:.1%}")
    stat = fp.get("statistical")
    if isinstance(stat, dict) and isinstance(stat.get("estimate"), int | float):
        if stat["estimate"] > limit + _TOL:
            problems.append(f"statistical estimate {stat['estimate']:.1%} synthetic "
                            f"(CI {stat.get('low', 0):.1%}-{stat.get('high', 1):.1%}) over the limit {limit:.1%}")
        else:
            facts.append(f"statistical estimate {stat['estimate']:.1%}")


def one_line(summary: dict[str, Any]) -> str:
    """``synthetic: 42.0% (depth <= 2; unknown 10.0%; human records 1200)`` for ``mir show``."""
    lin = summary.get("lineage") or summary
    parts = [f"{lin['synthetic_fraction']:.1%} of {lin['basis']}"]
    if lin.get("max_depth") is not None:
        parts.append(f"max depth {'>=' if lin.get('depth_lower_bound') else ''}{lin['max_depth']}")
    if lin.get("unknown_fraction"):
        parts.append(f"unknown provenance {lin['unknown_fraction']:.1%}")
    if lin.get("human_records") is not None:
        parts.append(f"human records {lin['human_records']}{'' if lin.get('human_records_complete') else '+?'}")
    fp = summary.get("fingerprint")
    if isinstance(fp, dict) and fp.get("matched_fraction") is not None:
        gens = ", ".join(sorted((fp.get("per_generator") or {}).keys()))
        parts.append(f"fingerprint match {fp['matched_fraction']:.1%}" + (f" ({gens})" if gens else ""))
    elif isinstance(fp, dict) and fp.get("status"):
        parts.append(f"fingerprint {fp['status']}")
    flags = [c["detail"] for c in summary.get("policy") or [] if not c.get("ok")]
    text = "; ".join(parts)
    return text + (f"  [LIMIT EXCEEDED: {'; '.join(flags)}]" if flags else "")
