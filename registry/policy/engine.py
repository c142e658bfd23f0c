"""The one policy engine: a pure function from a policy document and facts about a version to a decision.

``/v1/verify`` (facts from the database), the registry attestation in
verification bundles (the same facts, signed) and the offline bundle check
(those signed facts, plus the signers this machine trusts) all call
:func:`decide`, so online and offline cannot disagree. Fail closed: an
artifact outside the policy's ``artifacts`` glob is judged by the built-in
default policy, never by no rules at all; a missing fact is a failed check.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from registry.policy.statements import CLOCK_SKEW
from registry.policy.synthetic_limits import CHECK as SYNTHETIC_CHECK
from registry.policy.synthetic_limits import check_limits

# Formats that are data, not code or weights: always loadable (config.json, tokenizer files, README).
DATA_FORMATS = frozenset({"text", "empty"})
DEFAULT_BUNDLE_MAX_AGE = int(timedelta(days=7).total_seconds())
SCAN_VERDICTS = ("clean", "suspicious", "error", "malicious")
MAX_TRUSTED_GLOBALS = 1000


class RequiredSigners(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    keys: list[str] = Field(default_factory=list, description="key ids; empty means any key the namespace trusts")
    threshold: int = Field(default=1, ge=0, le=100, description="how many distinct keys must have signed (k of n)")


class PolicyBody(BaseModel):
    """The policy document. Unknown fields and coerced values (``"2"``, ``true`` for a number) are refused, so a
    typo cannot silently weaken a rule."""

    model_config = ConfigDict(extra="forbid", strict=True)
    required_signers: RequiredSigners = Field(default_factory=RequiredSigners)
    allowed_formats: list[str] = Field(default_factory=lambda: ["safetensors"])
    required_scan_verdicts: list[str] = Field(default_factory=lambda: ["clean"])
    refuse_quarantined_lineage: bool = True
    artifacts: str = Field(default="*", description="glob of artifact names these rules apply to; every other "
                           "artifact of the namespace gets the built-in default policy")
    max_synthetic_fraction: float | None = Field(default=None, ge=0, le=1)
    max_recursion_depth: int | None = Field(default=None, ge=0)
    bundle_max_age: int = Field(default=DEFAULT_BUNDLE_MAX_AGE, ge=0, le=10 * 365 * 86400,
                                description="seconds a verification bundle stays acceptable after it was issued")
    trusted_globals: list[str] = Field(
        default_factory=list, max_length=MAX_TRUSTED_GLOBALS,
        description="pickle globals (module.name) this namespace accepts as data beyond the scanner's allowlist: "
                    "a file the scan found suspicious only for using unlisted globals, all of them named here, "
                    "counts as clean. A global known to run code can never be listed")


DEFAULT_POLICY = PolicyBody()


def required_signers(signers: set[str] | frozenset[str], required_keys: Sequence[str]) -> set[str]:
    """The signers that count toward a k-of-n rule: those listed, or every trusted signer if none are listed."""
    wanted = set(required_keys)
    return set(signers) & wanted if wanted else set(signers)


@dataclass(frozen=True)
class Facts:
    """What is known about one version. ``None`` for a list-valued fact means "not known" (except where noted)."""

    artifact: str  # namespace/name
    version: str
    signers: frozenset[str]  # key ids whose signatures over the manifest verified against trusted keys
    scan_status: str | None
    formats: Mapping[str, str | None]  # path -> detected format (None: not scanned)
    quarantine: Mapping[str, Any] | None  # the quarantine status of the version or an ancestor; None: not held
    synthetic: Mapping[str, Any] | None = None
    corrupt_files: Sequence[str] | None = None  # paths whose stored bytes failed their digest; None: not tracked
    observed_problems: Sequence[str] | None = None  # local files vs manifest; None: nothing observed
    bundle_age: timedelta | None = None  # how old the bundle is; None: not a bundle
    file_verdicts: Mapping[str, str | None] | None = None  # path -> scan verdict; None: not attested
    unlisted_globals: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """path -> the globals that alone made that file suspicious (only files suspicious for nothing else)"""
    contamination: str | None = None  # the dataset contamination verdict folded into ``scan_status``


@dataclass(frozen=True)
class Check:
    check: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "ok": self.ok, "detail": self.detail}


@dataclass
class Decision:
    policy: PolicyBody  # the rules that applied (the namespace's, or the default for an artifact outside its glob)
    checks: list[Check] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def decision(self) -> str:
        return "allow" if self.allowed else "deny"

    def add(self, check: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(check, ok, detail))


def facts_from_attested(
    artifact: str, version: str, attested: Mapping[str, Any], signers: set[str], *,
    paths: Sequence[str] | None = None, **extra: Any,
) -> Facts:
    """Engine facts from the attested JSON (online straight from the database, offline from a signed bundle).

    ``paths`` (the manifest's, offline) makes a file the attestation does not mention count as unscanned.
    """
    raw_scan = attested.get("scan")
    scan: dict[str, Any] = raw_scan if isinstance(raw_scan, dict) else {}
    raw_formats = scan.get("formats")
    formats: dict[str, Any] = raw_formats if isinstance(raw_formats, dict) else {}
    if paths is not None:
        formats = {p: formats.get(p) for p in paths}
    corrupt = attested.get("corrupt_files")
    verdicts = _str_map(scan.get("verdicts"))
    unlisted = scan.get("unlisted_globals")
    if paths is not None and verdicts is not None:
        verdicts = {p: verdicts.get(p) for p in paths}
    return Facts(
        artifact=artifact, version=version, signers=frozenset(signers),
        scan_status=scan.get("status") if isinstance(scan.get("status"), str) else None,
        formats={str(p): f if isinstance(f, str) else None for p, f in formats.items()},
        quarantine=attested.get("quarantine") if isinstance(attested.get("quarantine"), dict) else None,
        synthetic=attested.get("synthetic") if isinstance(attested.get("synthetic"), dict) else None,
        corrupt_files=[str(p) for p in corrupt] if isinstance(corrupt, list) else None,
        file_verdicts=verdicts,
        unlisted_globals={str(p): [g for g in names if isinstance(g, str)] for p, names in unlisted.items()
                          if isinstance(names, list)} if isinstance(unlisted, dict) else {},
        contamination=scan.get("contamination") if isinstance(scan.get("contamination"), str) else None,
        **extra,
    )


def _str_map(raw: object) -> dict[str, str | None] | None:
    """A ``{path: verdict}`` object from attested JSON (a non-string value reads as "not known")."""
    if not isinstance(raw, dict):
        return None
    return {str(p): v if isinstance(v, str) else None for p, v in raw.items()}


def effective_policy(doc: PolicyBody, artifact: str) -> tuple[PolicyBody, str]:
    """The rules for ``artifact`` (``ns/name``): the document's if its glob covers the name, else the default."""
    name = artifact.rsplit("/", 1)[-1]
    if fnmatch.fnmatchcase(name, doc.artifacts):
        return doc, f"the namespace policy covers {name} ({doc.artifacts!r})"
    return DEFAULT_POLICY, f"{name} is outside the namespace policy's {doc.artifacts!r}: the built-in default applies"


def decide(doc: PolicyBody, facts: Facts, *, max_bundle_age: timedelta | None = None) -> Decision:
    """Every check of the applicable rules, each with its reason. ``max_bundle_age`` overrides the policy's."""
    rules, scope = effective_policy(doc, facts.artifact)
    decision = Decision(rules)
    decision.add("policy scope", True, scope)
    if facts.observed_problems is not None:
        problems = list(facts.observed_problems)
        decision.add("observed digests", not problems,
                     "; ".join(problems[:20]) if problems else "the files match the manifest")
    if facts.bundle_age is not None:
        limit = max_bundle_age if max_bundle_age is not None else timedelta(seconds=rules.bundle_max_age)
        decision.add("bundle age", _fresh(facts.bundle_age, limit), _describe_age(facts.bundle_age, limit))
    if facts.corrupt_files is not None:
        bad = sorted(facts.corrupt_files)
        decision.add("storage", not bad, f"stored bytes fail their digest: {', '.join(bad[:20])}" if bad
                     else "every stored file matches its digest")

    wanted = rules.required_signers.keys
    counted = required_signers(facts.signers, wanted)
    need = rules.required_signers.threshold
    decision.add("signers", len(counted) >= need,
                 f"{len(counted)} of the required {need} signature(s) from "
                 f"{'keys ' + ', '.join(sorted(wanted)) if wanted else 'trusted keys'}"
                 f"{': ' + ', '.join(sorted(counted)) if counted else ''}")

    status = facts.scan_status or "not scanned"
    lifted = _lift_trusted_globals(facts, rules.trusted_globals)
    if status not in rules.required_scan_verdicts and lifted is not None:
        effective, files = lifted
        decision.add("scan", effective in rules.required_scan_verdicts,
                     f"scan status {status}, {effective} under this policy: {_describe_lifted(files)}; "
                     f"policy requires {' or '.join(rules.required_scan_verdicts)}")
    else:
        decision.add("scan", status in rules.required_scan_verdicts,
                     f"scan status {status}; policy requires {' or '.join(rules.required_scan_verdicts)}")

    allowed = set(rules.allowed_formats) | DATA_FORMATS
    bad_formats = [f"{path} is {fmt or 'unscanned'}" for path, fmt in sorted(facts.formats.items())
                   if fmt not in allowed]
    decision.add("formats", bool(facts.formats) and not bad_formats,
                 "; ".join(bad_formats[:20]) if bad_formats else "no files" if not facts.formats
                 else f"all files are {' / '.join(sorted(allowed))}")

    if rules.refuse_quarantined_lineage:
        held = facts.quarantine
        label = f"{facts.artifact}@{facts.version}"
        decision.add("quarantine", held is None, _describe_quarantine(held, label) if held is not None
                     else "neither the version nor any ancestor is quarantined")
    limits = check_limits(dict(facts.synthetic) if facts.synthetic is not None else None,
                          max_fraction=rules.max_synthetic_fraction, max_depth=rules.max_recursion_depth)
    if limits is not None:
        decision.add(SYNTHETIC_CHECK, limits[0], limits[1])
    return decision


def _lift_trusted_globals(facts: Facts, trusted: Sequence[str]) -> tuple[str, dict[str, list[str]]] | None:
    """The scan verdict once the policy's trusted globals count as data, and the files that lifts; None if nothing
    can be lifted.

    Fail closed: only a ``suspicious`` status whose attested per-file verdicts (and contamination verdict) add up
    to it exactly, so a stale, partial or forged summary lifts nothing; only files whose every finding is an
    unlisted global the policy names; never ``malicious`` or ``error``.
    """
    verdicts = facts.file_verdicts
    if not trusted or facts.scan_status != "suspicious" or not verdicts or None in verdicts.values():
        return None
    known = [v for v in verdicts.values() if v is not None]
    if facts.contamination is not None:
        known.append(facts.contamination)
    if any(v not in SCAN_VERDICTS for v in known) or _worst(known) != "suspicious":
        return None
    allowed = set(trusted)
    lifted = {path: sorted(facts.unlisted_globals[path]) for path, v in verdicts.items()
              if v == "suspicious" and facts.unlisted_globals.get(path)
              and set(facts.unlisted_globals[path]) <= allowed}
    if not lifted:
        return None
    after = [("clean" if path in lifted else v) for path, v in verdicts.items() if v is not None]
    if facts.contamination is not None:
        after.append(facts.contamination)
    return _worst(after), lifted


def _worst(verdicts: Sequence[str]) -> str:
    return max(verdicts, key=SCAN_VERDICTS.index, default="clean")


def _describe_lifted(files: Mapping[str, Sequence[str]]) -> str:
    names = sorted({g for globals_ in files.values() for g in globals_})
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    paths = ", ".join(sorted(files)[:10]) + (f" and {len(files) - 10} more" if len(files) > 10 else "")
    return f"{paths} use only globals the policy trusts ({shown})"


def _fresh(age: timedelta, limit: timedelta) -> bool:
    return -CLOCK_SKEW <= age <= limit + CLOCK_SKEW


def _describe_age(age: timedelta, limit: timedelta) -> str:
    if age < -CLOCK_SKEW:
        return f"issued {_span(-age)} in the future: the clocks disagree or the bundle is forged"
    verdict = "within" if age <= limit + CLOCK_SKEW else "older than"
    return f"issued {_span(max(age, timedelta(0)))} ago, {verdict} the maximum age {_span(limit)}"


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds}s"


def _describe_quarantine(held: Mapping[str, Any], label: str) -> str:
    """One line: why the version is quarantined or affected (tolerant of any shape: offline it is attested JSON)."""
    sources = [s for s in held.get("sources") or [] if isinstance(s, dict)] or [{}]
    first = sources[0]
    if held.get("status") == "quarantined":
        same = (f"it has the same content as quarantined {first['same_content_as']}: "
                if first.get("same_content_as") else "")
        return f"{label} is quarantined: {same}{first.get('reason')} (by {first.get('by')} at {first.get('at')})"
    named = [s for s in sources if s.get("version") and not s.get("hidden")]
    if not named:
        return f"{label} descends from a quarantined version you cannot read"
    more = f" and {len(sources) - 1} more" if len(sources) > 1 else ""
    same = f", which has the same content as {named[0]['same_content_as']}" if named[0].get("same_content_as") else ""
    return (f"{label} is affected: it descends from quarantined {named[0]['version']}{same} "
            f"({named[0].get('reason')}){more}")
