"""Trusted keys per namespace, signature checks at push and commit, and the registry countersignature.

A pusher's signature is a DSSE envelope over an in-toto statement listing the
version's files. It counts only if it verifies with a key the namespace
trusts for that artifact (not revoked) and the statement lists *exactly* the
manifest's paths and digests (model-signing's subject digest ignores names,
so the path list is compared too). Signatures are never removed; revoking a
key is recorded and makes its signatures stop counting.
"""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.artifacts.models import Version
from registry.audit import log as audit
from registry.core.db import insert_new_rows
from registry.core.errors import ApiError
from registry.core.registry_key import RegistrySigner
from registry.core.tables import utcnow
from registry.trust.models import TrustedKey, VersionSignature
from signing.dsse import Envelope, EnvelopeFormatError
from signing.keys import KeyFormatError, PublicKey, key_hint, key_id, key_kind, load_public_key_pem
from signing.manifest import Manifest
from signing.sign import sign_manifest
from signing.verify import verify_envelope_for_manifest

PUSHER = "pusher"
REGISTRY = "registry"
MAX_ENVELOPE_BYTES = 1 << 20
_PATTERN = re.compile(r"^[A-Za-z0-9._*?\[\]-]{1,200}$")


def register_key(
    session: Session, namespace: str, public_pem: str, *, label: str, pattern: str, actor: str
) -> TrustedKey:
    if not _PATTERN.match(pattern):
        raise ApiError(400, "invalid_pattern", f"invalid artifact pattern {pattern!r}: a glob such as 'bert-*' or '*'")
    try:
        public = load_public_key_pem(public_pem.encode(), source="public key")
    except KeyFormatError as exc:
        raise ApiError(400, "invalid_key", str(exc)) from exc
    kid = key_id(public)
    existing = session.scalar(select(TrustedKey).where(TrustedKey.namespace == namespace, TrustedKey.key_id == kid))
    if existing is not None:
        state = "revoked" if existing.revoked_at else "registered"
        raise ApiError(409, "key_exists", f"key {kid} is already {state} in namespace {namespace!r}")
    row = TrustedKey(
        namespace=namespace, key_id=kid, label=label, algorithm=key_kind(public), public_pem=public_pem.strip() + "\n",
        artifact_pattern=pattern, created_by=actor,
    )
    session.add(row)
    session.flush()
    audit.record(session, action="key.added", actor=actor, namespace=namespace,
                 details={"key_id": kid, "label": label, "algorithm": row.algorithm, "artifacts": pattern})
    return row


def revoke_key(session: Session, namespace: str, kid: str, *, reason: str, actor: str) -> TrustedKey:
    row = session.scalar(select(TrustedKey).where(TrustedKey.namespace == namespace, TrustedKey.key_id == kid))
    if row is None:
        raise ApiError(404, "key_not_found", f"no key {kid} in namespace {namespace!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        row.revoked_reason = reason
        row.revoked_by = actor
        audit.record(session, action="key.revoked", actor=actor, namespace=namespace,
                     details={"key_id": kid, "reason": reason})
    return row


def keys_of(session: Session, namespace: str) -> list[TrustedKey]:
    return list(session.scalars(select(TrustedKey).where(TrustedKey.namespace == namespace).order_by(TrustedKey.id)))


def key_to_dict(row: TrustedKey) -> dict[str, Any]:
    return {
        "key_id": row.key_id, "key_hint": key_hint(load_public_key_pem(row.public_pem.encode())),
        "namespace": row.namespace, "label": row.label, "algorithm": row.algorithm,
        "public_key": row.public_pem, "artifacts": row.artifact_pattern, "created_at": row.created_at.isoformat(),
        "created_by": row.created_by, "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "revoked_reason": row.revoked_reason,
    }


def trust_for(session: Session, namespace: str, name: str) -> tuple[list[PublicKey], list[str]]:
    """(trusted public keys for this artifact, revoked key ids) as the namespace declares them."""
    trusted: list[PublicKey] = []
    revoked: list[str] = []
    for row in keys_of(session, namespace):
        if row.revoked_at is not None:
            revoked.append(row.key_id)
        elif fnmatch.fnmatchcase(name, row.artifact_pattern):
            trusted.append(load_public_key_pem(row.public_pem.encode(), source=f"key {row.key_id}"))
    return trusted, revoked


def parse_envelope(raw: object) -> Envelope:
    try:
        envelope = Envelope.from_dict(raw)
    except EnvelopeFormatError as exc:
        raise ApiError(400, "invalid_signature", f"malformed DSSE envelope: {exc}") from exc
    if len(envelope.payload) > MAX_ENVELOPE_BYTES:
        raise ApiError(413, "invalid_signature", "signature payload is too large")
    return envelope


def check_pusher_signature(
    session: Session, namespace: str, name: str, manifest: Manifest, envelope: Envelope
) -> list[str]:
    """Key ids of trusted keys that signed exactly ``manifest``; raises a 422 naming every failure otherwise."""
    trusted, revoked = trust_for(session, namespace, name)
    result = verify_envelope_for_manifest(envelope, manifest, trusted, revoked)
    if not result.ok:
        reasons = "; ".join(str(f) for f in result.failures) or "no trusted key signed it"
        raise ApiError(422, "signature_rejected", f"signature over {namespace}/{name} rejected: {reasons}",
                       failures=[{"kind": f.kind.value, "path": f.path, "message": f.message} for f in result.failures])
    return list(result.signer_key_ids)


def attach(
    session: Session, version: Version, envelope: Envelope, key_ids: list[str], *, origin: str, actor: str
) -> list[str]:
    """Record the envelope once per signing key; returns the key ids that had not signed this version yet (a
    key that already did keeps its first signature, never replaced). One statement for any number of keys."""
    text, unique = envelope.to_json().decode(), list(dict.fromkeys(key_ids))
    rows = [{"version_id": version.id, "key_id": kid, "origin": origin, "envelope": text, "created_by": actor}
            for kid in unique]
    added = insert_new_rows(session, VersionSignature, rows, key="key_id")
    return [kid for kid in unique if kid in added]


def pusher_envelopes(session: Session, version: Version) -> list[Envelope]:
    rows = session.scalars(
        select(VersionSignature.envelope)
        .where(VersionSignature.version_id == version.id, VersionSignature.origin == PUSHER)
        .order_by(VersionSignature.id)
    )
    return [Envelope.from_json(text) for text in dict.fromkeys(rows)]


def countersign(session: Session, signer: RegistrySigner, version: Version, manifest: Manifest) -> None:
    """The registry's own signature: 'I accepted exactly these files as this version'."""
    label = f"{version.artifact.namespace}/{version.artifact.name}@{version.version}"
    envelope = sign_manifest(manifest, signer.private_key, model_name=label)
    attach(session, version, envelope, [signer.key_id], origin=REGISTRY, actor="registry")


def signatures_of(session: Session, version: Version) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(VersionSignature).where(VersionSignature.version_id == version.id).order_by(VersionSignature.id)
    )
    return [
        {"key_id": r.key_id, "origin": r.origin, "created_at": r.created_at.isoformat(), "created_by": r.created_by,
         "envelope": _json(r.envelope)}
        for r in rows
    ]


def _json(text: str) -> Any:
    return json.loads(text)
