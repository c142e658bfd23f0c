"""Policy: the rules a version must meet before it may be loaded or deployed, and their evaluation.

A namespace's policy is JSON (strictly validated). Without one, the default
fails closed: at least one trusted signature, weights only as safetensors,
scans clean, no quarantined or affected lineage. The decision itself is taken
by ``registry.policy_engine`` from the facts gathered here, the same facts the
registry attests in verification bundles, so online and offline agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from hashlib import sha256
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from registry import audit, blob_integrity, policy_engine, quarantine, scans, signatures, synthetic
from registry.errors import ApiError
from registry.models import Policy, Version, utcnow
from registry.policy_engine import DEFAULT_POLICY, SCAN_VERDICTS, PolicyBody
from registry.versions import version_manifest
from signing.jcs import canonicalize
from signing.verify import verify_envelope_for_manifest

__all__ = ["DEFAULT_POLICY", "Decision", "PolicyBody", "attested_facts", "evaluate", "parse_policy", "policy_for"]


def parse_policy(raw: object) -> PolicyBody:
    try:
        body = PolicyBody.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:10])
        raise ApiError(400, "invalid_policy", f"invalid policy: {problems}") from exc
    if body.required_signers.keys and body.required_signers.threshold > len(body.required_signers.keys):
        raise ApiError(400, "invalid_policy", "threshold is larger than the number of required signer keys")
    bad = [v for v in body.required_scan_verdicts if v not in SCAN_VERDICTS]
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
class Decision:
    """The engine's decision about one stored version, with what it was about."""

    version: Version
    policy: PolicyBody  # the namespace's document (the engine may have applied the default to this artifact)
    default_policy: bool
    result: policy_engine.Decision

    @property
    def allowed(self) -> bool:
        return self.result.allowed

    @property
    def checks(self) -> list[policy_engine.Check]:
        return self.result.checks


def attested_facts(session: Session, version: Version) -> dict[str, Any]:
    """The facts policy is decided from, as JSON: what ``/v1/verify`` uses and what bundles sign."""
    results = scans.results_for(session, version.id)
    return {
        "scan": {
            "status": version.scan_status,
            "formats": {f.path: results[f.digest].format if f.digest in results else None for f in version.files},
        },
        "quarantine": quarantine.quarantine_status(session, version),
        # Lineage-declared synthetic share and a dataset's fingerprint match.
        "synthetic": synthetic.summary(session, version),
        # Paths whose stored bytes were found corrupt or missing (registry.blob_integrity): the "storage" check.
        "corrupt_files": blob_integrity.corrupt_files(session, version),
    }


def _observed_problems(version: Version, observed: dict[str, str]) -> list[str]:
    expected = {f.path: f.digest for f in version_manifest(version).files}
    problems = [f"missing {p}" for p in sorted(set(expected) - set(observed))]
    problems += [f"extra {p}" for p in sorted(set(observed) - set(expected))]
    problems += [f"modified {p}" for p in sorted(set(expected) & set(observed)) if expected[p] != observed[p]]
    return problems


def evaluate(session: Session, version: Version, observed: dict[str, str] | None = None) -> Decision:
    """Evaluate the namespace policy for ``version`` (and, if given, the digests a job observed on disk)."""
    namespace, name = version.artifact.namespace, version.artifact.name
    body, is_default = policy_for(session, namespace)
    manifest = version_manifest(version)
    trusted, revoked = signatures.trust_for(session, namespace, name)
    signers: set[str] = set()
    for envelope in signatures.pusher_envelopes(session, version):
        result = verify_envelope_for_manifest(envelope, manifest, trusted, revoked)
        if result.ok:
            signers.update(result.signer_key_ids)
    facts = policy_engine.facts_from_attested(
        f"{namespace}/{name}", version.version, attested_facts(session, version), signers,
        observed_problems=_observed_problems(version, observed) if observed is not None else None,
    )
    return Decision(version, body, is_default, policy_engine.decide(body, facts))


def decision_to_dict(decision: Decision) -> dict[str, Any]:
    version = decision.version
    return {
        "artifact": f"{version.artifact.namespace}/{version.artifact.name}",
        "version": version.version,
        "manifest_digest": version.manifest_digest,
        "decision": decision.result.decision,
        "policy": decision.policy.model_dump(),
        "policy_digest": policy_digest(decision.policy),
        "default_policy": decision.default_policy,
        "checks": [c.to_dict() for c in decision.checks],
    }
