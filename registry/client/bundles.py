"""Offline verification of a mir verification bundle: no server, only local trust.

Trust comes from two local sources: the registry's public key (pinned, or
given) and the signer keys this machine trusts. From those, the bundle must
show: the manifest hashes to its digest; the registry countersigned exactly
it; the registry's attestation (scan verdicts, formats, quarantine state,
policy) covers it and satisfies the attested policy; enough trusted signers
signed it; the bundle is not older than the policy allows; and the commit
entry is included in a signed audit tree head. The policy is decided by
``registry.policy.engine`` from the attested facts: the same engine and the
same facts as ``/v1/verify``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from registry.policy import engine as policy_engine
from registry.policy.statements import ATTESTATION_KIND, ATTESTATION_TYPE, BUNDLE_MEDIA_TYPE
from registry.policy.synthetic_limits import CHECK as SYNTHETIC_CHECK
from registry.trust.signature_set import countersigned, trusted_signers
from signing.dsse import signed_json_payload
from signing.keys import KeyFormatError, PublicKey, key_id, load_public_key_pem
from signing.manifest import InvalidManifestError, Manifest
from signing.merkle import ProofError, leaf_hash, verify_inclusion
from signing.tree_head import SignedTreeHead, TreeHeadError, verify_tree_head


class BundleError(ValueError):
    """The bundle cannot be read at all (not JSON, wrong media type, missing parts)."""


@dataclass
class BundleReport:
    reference: str = ""
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    manifest: Manifest | None = None
    blake3: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append((name, ok, detail))

    def failures(self) -> list[str]:
        return [f"{name}: {detail}" for name, ok, detail in self.checks if not ok]


def load_bundle(data: bytes | str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(data, dict):
        bundle = data
    else:
        try:
            bundle = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise BundleError(f"verification bundle is not valid JSON: {exc}") from exc
    if not isinstance(bundle, dict) or bundle.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise BundleError(f"not a mir verification bundle (mediaType must be {BUNDLE_MEDIA_TYPE})")
    for part in ("artifact", "version", "manifest", "manifest_digest", "signatures", "registry_key", "attestation",
                 "audit"):
        if part not in bundle:
            raise BundleError(f"verification bundle has no {part!r}")
    return bundle


@dataclass(frozen=True)
class Subject:
    """What the caller asked for: the signed attestation must be about it (a version, or the alias it resolved)."""

    artifact: str
    ref: str
    nonce: str | None = None


def check_bundle(
    raw: bytes | str | dict[str, Any],
    *,
    registry_key: PublicKey | None,
    signer_keys: list[PublicKey],
    revoked_key_ids: Sequence[str] = (),
    max_bundle_age: timedelta | None = None,
    now: datetime | None = None,
    subject: Subject | None = None,
) -> BundleReport:
    """Check everything the bundle claims against local trust. Never raises for a bad signature: reports it.

    ``max_bundle_age`` overrides the attested policy's ``bundle_max_age``; ``now`` defaults to the clock.
    """
    bundle = load_bundle(raw)
    report = BundleReport(reference=f"{bundle['artifact']}@{bundle['version']}")
    try:
        served_key = load_public_key_pem(str(bundle["registry_key"]["public_key"]).encode(), source="bundle key")
    except (KeyFormatError, KeyError, TypeError) as exc:
        report.add("registry key", False, f"unreadable registry key in bundle: {exc}")
        return report
    if registry_key is None:
        report.add("registry key", False, "no pinned registry key: pass the registry's public key")
        return report
    if key_id(served_key) != key_id(registry_key):
        report.add("registry key", False, f"bundle was made by key {key_id(served_key)}, not the trusted "
                   f"registry key {key_id(registry_key)}")
        return report
    report.add("registry key", True, f"bundle made by the trusted registry key {key_id(registry_key)}")

    try:
        manifest = Manifest.from_dict(bundle["manifest"])
    except InvalidManifestError as exc:
        report.add("manifest", False, str(exc))
        return report
    report.manifest = manifest
    report.add("manifest", manifest.digest() == bundle["manifest_digest"],
               f"recomputed {manifest.digest()}, bundle says {bundle['manifest_digest']}")

    sigs = bundle["signatures"] if isinstance(bundle["signatures"], list) else []
    counter_ok = countersigned(sigs, manifest, registry_key)
    report.add("registry countersignature", counter_ok,
               "the registry signed exactly this manifest" if counter_ok else "missing or invalid")

    att = signed_json_payload(bundle["attestation"], registry_key, ATTESTATION_TYPE)
    if att is None or (att.get("manifest_digest"), att.get("type")) != (manifest.digest(), ATTESTATION_KIND):
        report.add("attestation", False, "registry attestation missing, not signed by the registry key, or about "
                   "another manifest")
        return report
    signed_ref = f"{att.get('artifact')}@{att.get('version')}"
    if (att.get("artifact"), att.get("version")) != (bundle["artifact"], bundle["version"]):
        report.add("attestation", False, f"the registry attested {signed_ref}, but the bundle claims "
                   f"{report.reference}")
        return report
    report.add("attestation", True, f"registry attestation of {signed_ref} issued at {att.get('issued_at')}")
    if subject is not None:
        _check_subject(report, att, subject)
    blake3 = att.get("blake3") or {}
    report.blake3 = {p: d for p, d in blake3.items() if isinstance(p, str) and isinstance(d, str)}

    try:
        policy = policy_engine.PolicyBody.model_validate(att.get("policy"))
    except ValidationError as exc:
        report.add("policy", False, f"the attested policy is unreadable: {exc.errors()[0]['msg']}")
        return report
    revoked = [*revoked_key_ids, *(k for k in att.get("revoked_key_ids") or [] if isinstance(k, str))]
    signers, _ = trusted_signers(sigs, manifest, signer_keys, revoked)
    age = _bundle_age(att.get("issued_at"), now or datetime.now(UTC))
    facts = policy_engine.facts_from_attested(
        str(att["artifact"]), str(att["version"]), att, signers, paths=[f.path for f in manifest.files],
        bundle_age=age if age is not None else timedelta.max,
    )
    for check in policy_engine.decide(policy, facts, max_bundle_age=max_bundle_age).checks:
        detail = "the attestation has no readable issue time" if check.check == "bundle age" and age is None \
            else check.detail
        report.add(check.check, check.ok, detail + (" (as attested)" if check.check in _ATTESTED else ""))
    _check_audit(report, bundle["audit"], registry_key, bundle, manifest)
    return report


_ATTESTED = frozenset({"scan", "formats", "quarantine", "storage", SYNTHETIC_CHECK})


def _check_subject(report: BundleReport, att: dict[str, Any], subject: Subject) -> None:
    signed_ref = f"{att.get('artifact')}@{att.get('version')}"
    asked = f"{subject.artifact}@{subject.ref}"
    same = att.get("artifact") == subject.artifact and subject.ref in (att.get("version"), att.get("requested_ref"))
    report.add("subject", same, f"the registry attested {signed_ref} for {asked}" if same
               else f"the bundle is about {signed_ref} (asked as @{att.get('requested_ref')}), not {asked}")
    if subject.nonce is not None:
        fresh = att.get("nonce") == subject.nonce
        report.add("nonce", fresh, "the attestation echoes this request's nonce" if fresh
                   else "the attestation does not echo this request's nonce: it answers another request")


def _bundle_age(issued_at: Any, now: datetime) -> timedelta | None:
    try:
        issued = datetime.fromisoformat(str(issued_at))
    except ValueError:
        return None
    return now - issued if issued.tzinfo is not None else None


def _check_audit(report: BundleReport, audit: Any, key: PublicKey, bundle: dict[str, Any], manifest: Manifest) -> None:
    try:
        head = verify_tree_head(SignedTreeHead.from_dict(audit["tree_head"]), key, key_id=key_id(key))
        entry = audit["entry"]
        body = str(entry["body"]).encode()
        leaf = leaf_hash(body)
        if leaf.hex() != entry["leaf_hash"]:
            raise ValueError("entry does not hash to its leaf")
        proof = [bytes.fromhex(h) for h in audit["inclusion_proof"]]
        if not verify_inclusion(leaf, int(entry["index"]), head.tree_size, proof, head.root_hash):
            raise ValueError("inclusion proof does not verify against the signed tree head")
        content = json.loads(body)
        expected = (f"{bundle['artifact']}", bundle["version"], manifest.digest())
        found = (content.get("artifact"), content.get("version"), (content.get("details") or {}).get("manifest_digest"))
        if content.get("action") != "version.committed" or found != expected:
            raise ValueError(f"the audit entry records {content.get('action')} of {found}, not this commit")
    except (TreeHeadError, ProofError, KeyError, TypeError, ValueError) as exc:
        report.add("audit log", False, f"commit not proven in the audit log: {exc}")
        return
    report.add("audit log", True, f"commit is entry {entry['index']} of the signed log of {head.tree_size} entries")
