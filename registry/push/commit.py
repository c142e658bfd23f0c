"""Step 3 of a push: check everything a version declared, make it immutable, countersign, queue its scans.

This is where the domains meet: the blobs (artifacts), the pusher signatures and the registry's countersignature
(trust), the lineage references (lineage) and the scan queue (scanning). Each of those knows nothing of the
others; the push flow calls them in order, inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy.orm import Session

from registry.artifacts import versions
from registry.artifacts.models import Version
from registry.artifacts.versions import record_version_event
from registry.core.blob_stores import BlobStore
from registry.core.errors import ApiError
from registry.core.registry_key import RegistrySigner
from registry.core.tables import utcnow
from registry.lineage.edges import check_at_commit
from registry.scanning import queue as scan_queue
from registry.trust import signatures


@dataclass(frozen=True)
class OpenedHere:
    """A version opened by the committing transaction itself (an inline push that commits at once). No other
    transaction can see it yet, so it holds only what that open attached: the pusher signatures the open has
    just checked (not checked again) and, unless ``lineage_declared``, no lineage (not looked up)."""

    lineage_declared: bool


def commit_version(
    session: Session, blobs: BlobStore, version: Version, *, actor: str, signer: RegistrySigner | None = None,
    held_here: Collection[str] = (),
    opened_here: OpenedHere | None = None,
) -> Version:
    """Make an open version immutable after checking every blob and signature; countersign; move ``@latest``.

    ``held_here``: digests this same transaction found held by the namespace and present in the store (an open
    that stored its inline contents): the check skips them rather than asking again. ``opened_here``: the
    version was opened by this same transaction (see :class:`OpenedHere`).
    """
    if version.state == versions.COMMITTED:
        return version  # a retried commit (its first answer was lost): same version, nothing new to record
    label = f"{version.artifact.namespace}/{version.artifact.name}@{version.version}"
    manifest = versions.version_manifest(version)
    if manifest.digest() != version.manifest_digest:
        raise ApiError(500, "manifest_corrupt", f"stored manifest of {label} does not match its digest")
    missing = versions.missing_digests(session, blobs, manifest, version.artifact.namespace, held_here)
    if missing:
        raise ApiError(
            409,
            "blobs_missing",
            f"{len(missing)} blob(s) of {label} have not been uploaded",
            missing=missing[:100],
        )
    if opened_here is None:
        for envelope in signatures.pusher_envelopes(session, version):
            # Re-checked at commit: a key revoked since the version was opened no longer counts.
            signatures.check_pusher_signature(
                session, version.artifact.namespace, version.artifact.name, manifest, envelope
            )
    if opened_here is None or opened_here.lineage_declared:
        check_at_commit(session, version, actor=actor)
    version.state = versions.COMMITTED
    version.committed_at = utcnow()
    scan_queue.enqueue(session, version)  # first: its flush writes the state and the scan status in one UPDATE
    if signer is not None:
        signatures.countersign(session, signer, version, manifest)
    record_version_event(session, version, action="version.committed", actor=actor,
        details={"manifest_digest": version.manifest_digest, "file_count": version.file_count,
                 "total_size": version.total_size})
    versions.move_alias(session, version.artifact, versions.LATEST, version, actor=actor, reason="commit")
    return version
