"""Which namespace holds which blob: deduplicated storage without cross-tenant reads.

Blobs are stored once, whoever sent them. A push may skip sending a file only
when its namespace already holds those bytes, or when the pusher may read a
namespace that holds them, in which case the blob is mounted into the pushing
namespace (what OCI registries require for a cross-repository mount). Anyone
else must send the bytes, which the server hashes as usual. Every answer about
"what is missing" is computed this way, so none reveals whether a digest exists
in a namespace the caller cannot read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.artifacts.gc import hold_blobs_against_gc
from registry.artifacts.models import Blob, NamespaceBlob
from registry.core.blob_stores import BlobStore

CanRead = Callable[[str], bool]
_IN_CHUNK = 500


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def _stored(session: Session, blobs: BlobStore, wanted: Mapping[str, int]) -> set[str]:
    """Digests whose blob row and stored file both exist with the wanted size, and that are not marked corrupt
    (a push then sends the bytes again, which repairs the stored copy). Until the transaction ends, garbage
    collection cannot remove what this found (:func:`registry.artifacts.gc.hold_blobs_against_gc`)."""
    hold_blobs_against_gc(session)
    stored: set[str] = set()
    for chunk in _chunks(sorted(wanted)):
        rows = session.execute(select(Blob.digest, Blob.size, Blob.corrupt_at).where(Blob.digest.in_(chunk)))
        for digest, size, corrupt_at in rows:
            if corrupt_at is None and size == wanted[digest] and blobs.exists(digest, size):
                stored.add(digest)
    return stored


def _holders(session: Session, digests: Iterable[str]) -> dict[str, set[str]]:
    """For each digest, the namespaces that hold it."""
    holders: dict[str, set[str]] = {}
    for chunk in _chunks(sorted(set(digests))):
        rows = session.execute(
            select(NamespaceBlob.digest, NamespaceBlob.namespace).where(NamespaceBlob.digest.in_(chunk))
        )
        for digest, namespace in rows:
            holders.setdefault(digest, set()).add(namespace)
    return holders


def record_holding(session: Session, namespace: str, digests: Iterable[str]) -> None:
    """The namespace now holds these blobs (idempotent, safe under concurrent pushes)."""
    wanted = set(digests)
    if not wanted:
        return
    held = {d for d, owners in _holders(session, wanted).items() if namespace in owners}
    for digest in sorted(wanted - held):
        try:
            with session.begin_nested():
                session.add(NamespaceBlob(namespace=namespace, digest=digest))
        except IntegrityError:
            continue


def missing_for_push(
    session: Session, blobs: BlobStore, namespace: str, files: Mapping[str, int], can_read: CanRead
) -> list[str]:
    """Digests (of ``digest -> size``) the pusher must send; the rest are held by, or mounted into, ``namespace``.

    A stored blob counts as present only if ``namespace`` holds it or the caller may read a namespace that does;
    the latter is recorded as a mount so the commit finds it.
    """
    stored = _stored(session, blobs, files)
    holders = _holders(session, stored)
    present: set[str] = set()
    mounts: list[str] = []
    for digest in stored:
        owners = holders.get(digest, set())
        if namespace in owners:
            present.add(digest)
        elif any(can_read(owner) for owner in sorted(owners)):
            present.add(digest)
            mounts.append(digest)
    record_holding(session, namespace, mounts)
    return sorted(d for d in files if d not in present)


def held_by(session: Session, blobs: BlobStore, namespace: str, files: Mapping[str, int]) -> set[str]:
    """The digests (of ``digest -> size``) that ``namespace`` holds and the store really has."""
    stored = _stored(session, blobs, files)
    holders = _holders(session, stored)
    return {d for d in stored if namespace in holders.get(d, set())}


def held_size(session: Session, namespace: str, digest: str) -> int | None:
    """The size of a blob ``namespace`` holds, or None: never says whether another namespace has it."""
    row = session.execute(
        select(Blob.size)
        .join(NamespaceBlob, NamespaceBlob.digest == Blob.digest)
        .where(Blob.digest == digest, NamespaceBlob.namespace == namespace)
    ).first()
    return int(row[0]) if row is not None else None
