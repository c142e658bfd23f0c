"""The deploy gate's decisions: gather a version's facts from every domain and let the policy engine decide.

The decision itself is taken by :mod:`registry.policy.engine` from the facts
gathered here, the same facts the registry attests in verification bundles,
so online and offline agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from registry.artifacts import integrity as blob_integrity
from registry.artifacts.models import Version
from registry.artifacts.versions import version_manifest
from registry.lineage import quarantine
from registry.lineage.graph import CanRead
from registry.policy import engine as policy_engine
from registry.policy.documents import policy_digest, policy_for
from registry.policy.engine import PolicyBody
from registry.scanning import results as scans
from registry.synthetic import provenance as synthetic
from registry.synthetic.models import ContaminationResult
from registry.trust import signatures
from signing.verify import verify_envelope_for_manifest


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


def attested_facts(session: Session, version: Version, *, can_read: CanRead) -> dict[str, Any]:
    """The facts policy is decided from, as JSON: what ``/v1/verify`` uses and what bundles sign.

    Computed in the caller's view (``can_read``): versions in namespaces the caller may not read keep their
    weight in every fact but lose their names, reasons and who quarantined them. The registry's own callers
    pass ``everyone``.
    """
    results = scans.results_for(session, version.id)
    unlisted = {f.path: names for f in version.files if f.digest in results
                and (names := scans.unlisted_globals(results[f.digest]))}
    return {
        "scan": {
            "status": version.scan_status,
            "formats": {f.path: results[f.digest].format if f.digest in results else None for f in version.files},
            # Per file, so a namespace's trusted_globals can lift exactly what it names (policy engine).
            "verdicts": {f.path: results[f.digest].verdict if f.digest in results else None for f in version.files},
            "unlisted_globals": unlisted,
            "contamination": _contamination_verdict(session, version),
        },
        "quarantine": quarantine.quarantine_status(session, version, can_read=can_read),
        # Lineage-declared synthetic share and a dataset's fingerprint match.
        "synthetic": synthetic.summary(session, version, can_read=can_read),
        # Paths whose stored bytes were found corrupt or missing (registry.artifacts.integrity): the "storage" check.
        "corrupt_files": blob_integrity.corrupt_files(session, version),
    }


def _contamination_verdict(session: Session, version: Version) -> str | None:
    """The dataset contamination verdict the scan status folded in (None: not a dataset, or not analysed)."""
    row = session.get(ContaminationResult, version.id)
    return row.verdict if row is not None else None


def _observed_problems(version: Version, observed: dict[str, str]) -> list[str]:
    expected = {f.path: f.digest for f in version_manifest(version).files}
    problems = [f"missing {p}" for p in sorted(set(expected) - set(observed))]
    problems += [f"extra {p}" for p in sorted(set(observed) - set(expected))]
    problems += [f"modified {p}" for p in sorted(set(expected) & set(observed)) if expected[p] != observed[p]]
    return problems


def evaluate(
    session: Session, version: Version, observed: dict[str, str] | None = None, *, can_read: CanRead
) -> Decision:
    """Evaluate the namespace policy for ``version`` (and, if given, the digests a job observed on disk).

    The decision does not depend on ``can_read``; only what the checks' details name does.
    """
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
        f"{namespace}/{name}", version.version, attested_facts(session, version, can_read=can_read), signers,
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
