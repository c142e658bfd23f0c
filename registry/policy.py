"""Policy: the rules a version must meet before it may be loaded or deployed, and their evaluation.

A namespace's policy is JSON (strictly validated). Without one, the default
fails closed: at least one trusted signature, weights only as safetensors,
scans clean, no quarantined or affected lineage. Every check reports its own
reason so a refused deploy says exactly what to fix.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from hashlib import sha256
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from registry import audit, quarantine, scans, signatures, synthetic
from registry.bundle_check import DATA_FORMATS, required_signers
from registry.errors import ApiError
from registry.models import Policy, Version, utcnow
from registry.synthetic_check import CHECK as SYNTHETIC_CHECK
from registry.synthetic_check import check_limits
from registry.versions import version_manifest
from signing.jcs import canonicalize
from signing.verify import verify_envelope_for_manifest


class RequiredSigners(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keys: list[str] = Field(default_factory=list, description="key ids; empty means any key the namespace trusts")
    threshold: int = Field(default=1, ge=0, le=100, description="how many distinct keys must have signed (k of n)")


class PolicyBody(BaseModel):
    """The policy document. Unknown fields are refused so a typo cannot silently weaken a rule."""

    model_config = ConfigDict(extra="forbid")
    required_signers: RequiredSigners = Field(default_factory=RequiredSigners)
    allowed_formats: list[str] = Field(default_factory=lambda: ["safetensors"])
    required_scan_verdicts: list[str] = Field(default_factory=lambda: ["clean"])
    refuse_quarantined_lineage: bool = True
    artifacts: str = Field(default="*", description="glob of artifact names this policy applies to")
    max_synthetic_fraction: float | None = Field(default=None, ge=0, le=1)
    max_recursion_depth: int | None = Field(default=None, ge=0)


DEFAULT_POLICY = PolicyBody()


def parse_policy(raw: object) -> PolicyBody:
    try:
        body = PolicyBody.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:10])
        raise ApiError(400, "invalid_policy", f"invalid policy: {problems}") from exc
    if body.required_signers.keys and body.required_signers.threshold > len(body.required_signers.keys):
        raise ApiError(400, "invalid_policy", "threshold is larger than the number of required signer keys")
    bad = [v for v in body.required_scan_verdicts if v not in ("clean", "suspicious", "error", "malicious")]
    if bad:
        raise ApiError(400, "invalid_policy", f"unknown scan verdicts: {', '.join(bad)}")
    return body


def policy_for(session: Session, namespace: str) -> tuple[PolicyBody, bool]:
    """The namespace's policy (and whether it is the built-in default)."""
    row = session.get(Policy, namespace)
    if row is None:
        return DEFAULT_POLICY, True
    return parse_policy(row.body), False


def set_policy(session: Session, namespace: str, body: PolicyBody, actor: str) -> Policy:
    row = session.get(Policy, namespace)
    data = body.model_dump()
    if row is None:
        row = Policy(namespace=namespace, body=data, updated_by=actor)
        session.add(row)
    else:
        row.body, row.updated_at, row.updated_by = data, utcnow(), actor
    audit.record(session, action="policy.set", actor=actor, namespace=namespace,
                 details={"policy": data, "policy_digest": policy_digest(body)})
    return row


def policy_digest(body: PolicyBody) -> str:
    return "sha256:" + sha256(canonicalize(body.model_dump())).hexdigest()


@dataclass
class CheckResult:
    check: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "ok": self.ok, "detail": self.detail}


@dataclass
class Decision:
    version: Version
    policy: PolicyBody
    default_policy: bool
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, check: str, ok: bool, detail: str) -> None:
        self.checks.append(CheckResult(check, ok, detail))


def evaluate(session: Session, version: Version, observed: dict[str, str] | None = None) -> Decision:
    """Evaluate the namespace policy for ``version`` (and, if given, the digests a job observed on disk)."""
    namespace, name = version.artifact.namespace, version.artifact.name
    body, is_default = policy_for(session, namespace)
    decision = Decision(version, body, is_default)
    manifest = version_manifest(version)
    if not fnmatch.fnmatchcase(name, body.artifacts):
        decision.add("policy scope", True, f"policy applies to {body.artifacts!r}; {name} is outside it")
        return decision

    if observed is not None:
        expected = {f.path: f.digest for f in manifest.files}
        missing = sorted(set(expected) - set(observed))
        extra = sorted(set(observed) - set(expected))
        changed = sorted(p for p in set(expected) & set(observed) if expected[p] != observed[p])
        problems = [f"missing {p}" for p in missing] + [f"extra {p}" for p in extra]
        problems += [f"modified {p}" for p in changed]
        decision.add("observed digests", not problems,
                     "; ".join(problems[:20]) if problems else f"{len(expected)} files match the manifest")

    trusted, revoked = signatures.trust_for(session, namespace, name)
    signers: set[str] = set()
    for envelope in signatures.pusher_envelopes(session, version):
        result = verify_envelope_for_manifest(envelope, manifest, trusted, revoked)
        if result.ok:
            signers.update(result.signer_key_ids)
    wanted = set(body.required_signers.keys)
    counted = required_signers(signers, body.required_signers.keys)
    need = body.required_signers.threshold
    decision.add("signers", len(counted) >= need,
                 f"{len(counted)} of the required {need} signature(s) from "
                 f"{'keys ' + ', '.join(sorted(wanted)) if wanted else 'trusted keys'}"
                 f"{': ' + ', '.join(sorted(counted)) if counted else ''}")

    status = version.scan_status or "not scanned"
    decision.add("scan", status in body.required_scan_verdicts,
                 f"scan status {status}; policy requires {' or '.join(body.required_scan_verdicts)}")

    results = scans.results_for(session, version.id)
    allowed = set(body.allowed_formats) | DATA_FORMATS
    bad_formats = []
    for f in version.files:
        fmt = results[f.digest].format if f.digest in results else "unscanned"
        if fmt not in allowed:
            bad_formats.append(f"{f.path} is {fmt}")
    decision.add("formats", not bad_formats,
                 "; ".join(bad_formats[:20]) if bad_formats
                 else f"all files are {' / '.join(sorted(allowed))}")

    if body.refuse_quarantined_lineage:
        held = quarantine.quarantine_status(session, version)
        decision.add("quarantine", held is None,
                     quarantine.describe_status(held, f"{namespace}/{name}@{version.version}") if held
                     else "neither the version nor any ancestor is quarantined")
    if body.max_synthetic_fraction is not None or body.max_recursion_depth is not None:
        # Lineage-declared share (unknown counts as synthetic) and, for datasets, the fingerprint match: see
        # registry.synthetic_check, which the offline bundle check shares.
        limits = check_limits(synthetic.summary(session, version), max_fraction=body.max_synthetic_fraction,
                              max_depth=body.max_recursion_depth)
        if limits is not None:
            decision.add(SYNTHETIC_CHECK, limits[0], limits[1])
    return decision


def decision_to_dict(decision: Decision) -> dict[str, Any]:
    version = decision.version
    return {
        "artifact": f"{version.artifact.namespace}/{version.artifact.name}",
        "version": version.version,
        "manifest_digest": version.manifest_digest,
        "decision": "allow" if decision.allowed else "deny",
        "policy": decision.policy.model_dump(),
        "policy_digest": policy_digest(decision.policy),
        "default_policy": decision.default_policy,
        "checks": [c.to_dict() for c in decision.checks],
    }
