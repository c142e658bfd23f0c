"""What the registry signs for verifiers: short-lived decision receipts and verification bundles.

Both are DSSE envelopes signed with the registry key over RFC 8785 JSON, with
their own payload types, so neither can be mistaken for the other or for a
model signature. A bundle carries everything needed to decide offline:
manifest, every signature, the registry's attestation (scan verdicts,
formats, quarantine state, policy, BLAKE3 digests) and the audit inclusion
proof of the version's commit entry under a signed tree head.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.artifacts.models import Blob, Version, VersionFile
from registry.audit import log as audit
from registry.audit.models import AuditEntry
from registry.core.registry_key import RegistrySigner
from registry.core.tables import utcnow
from registry.gate import decisions as policy
from registry.lineage.graph import CanRead
from registry.policy.documents import policy_digest, policy_for
from registry.policy.statements import ATTESTATION_TYPE, BUNDLE_MEDIA_TYPE, RECEIPT_TYPE
from registry.trust import signatures
from signing.dsse import Envelope, sign_envelope
from signing.jcs import canonicalize

RECEIPT_TTL = timedelta(minutes=5)


def sign_payload(signer: RegistrySigner, payload: dict[str, Any], payload_type: str) -> Envelope:
    return sign_envelope(canonicalize(payload), signer.private_key, payload_type)


def receipt(
    signer: RegistrySigner, decision: policy.Decision, observed: dict[str, str] | None, *, reference: str,
    nonce: str | None,
) -> dict[str, Any]:
    """A short-lived signed statement of the decision, for the job to keep or pass on.

    It names its subject (the reference asked about, the artifact, version and manifest digest it resolved to)
    and echoes the caller's nonce, so a verifier can refuse a receipt about something else or from earlier.
    Its checks are the decision's, worded in the caller's view (``decisions.evaluate(..., can_read=...)``).
    """
    now = utcnow()
    body = policy.decision_to_dict(decision)
    payload = {
        "type": "mir.verification-receipt.v1",
        "reference": reference,
        "nonce": nonce,
        "artifact": body["artifact"],
        "version": body["version"],
        "manifest_digest": body["manifest_digest"],
        "decision": body["decision"],
        "policy_digest": body["policy_digest"],
        "checks": body["checks"],
        "observed_digests": dict(sorted(observed.items())) if observed is not None else None,
        "issued_at": now.isoformat(),
        "expires_at": (now + RECEIPT_TTL).isoformat(),
        "key_id": signer.key_id,
    }
    return sign_payload(signer, payload, RECEIPT_TYPE).to_dict()


def _blake3_digests(session: Session, version: Version) -> dict[str, str]:
    rows = session.execute(
        select(VersionFile.path, Blob.blake3).join(Blob, Blob.digest == VersionFile.digest)
        .where(VersionFile.version_id == version.id)
    )
    return {path: b3 for path, b3 in rows if b3 is not None}


def _commit_entry(session: Session, version: Version) -> AuditEntry | None:
    query = select(AuditEntry).where(
        AuditEntry.namespace == version.artifact.namespace, AuditEntry.name == version.artifact.name,
        AuditEntry.version == version.version, AuditEntry.action == "version.committed",
    ).order_by(AuditEntry.leaf_index).limit(1)
    entry = session.scalar(query)
    if entry is None:
        # Committed by a request whose sequencer pass is still running: wait for it, so a committed version's
        # bundle always carries its entry and inclusion proof.
        audit.settle(session)
        entry = session.scalar(query)
    return entry


def bundle(
    session: Session, signer: RegistrySigner, version: Version, log_id: str, *, can_read: CanRead,
    requested_ref: str | None = None, nonce: str | None = None,
) -> dict[str, Any]:
    """Everything a verifier needs to check this version offline.

    The attestation carries the facts ``/v1/verify`` decides from (``policy.attested_facts``), so the offline
    check runs the same engine on the same facts; ``requested_ref`` and ``nonce`` echo what the caller asked.
    The facts are in the caller's view (``can_read``): the bundle names nothing the caller may not read.
    """
    label = {"artifact": f"{version.artifact.namespace}/{version.artifact.name}", "version": version.version}
    body, is_default = policy_for(session, version.artifact.namespace)
    attestation = {
        "type": "mir.registry-attestation.v1",
        **label,
        "requested_ref": requested_ref if requested_ref is not None else version.version,
        "nonce": nonce,
        "manifest_digest": version.manifest_digest,
        "blake3": _blake3_digests(session, version),
        **policy.attested_facts(session, version, can_read=can_read),
        # Revocations can only make verification stricter, so an offline verifier may take them from here.
        "revoked_key_ids": sorted(k.key_id for k in signatures.keys_of(session, version.artifact.namespace)
                                  if k.revoked_at is not None),
        "policy": body.model_dump(),
        "policy_digest": policy_digest(body),
        "default_policy": is_default,
        "issued_at": utcnow().isoformat(),
        "key_id": signer.key_id,
    }
    entry = _commit_entry(session, version)
    head = audit.current_tree_head(session, signer, log_id)
    proof = audit.inclusion_proof(session, entry.leaf_index, head.head.tree_size) if entry is not None else None
    return {
        "mediaType": BUNDLE_MEDIA_TYPE,
        **label,
        "manifest": {"files": [{"path": f.path, "size": f.size, "digest": f.digest} for f in version.files]},
        "manifest_digest": version.manifest_digest,
        "signatures": signatures.signatures_of(session, version),
        "registry_key": {"key_id": signer.key_id, "public_key": signer.public_pem},
        "attestation": sign_payload(signer, attestation, ATTESTATION_TYPE).to_dict(),
        "audit": {
            "entry": {"index": entry.leaf_index, "body": entry.body, "leaf_hash": entry.leaf_hash} if entry else None,
            "inclusion_proof": proof["proof"] if proof else None,
            "tree_head": head.to_dict(),
        },
    }
