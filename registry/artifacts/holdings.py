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
from sqlalchemy.orm import Session

from registry.artifacts.gc import hold_blobs_against_gc
from registry.artifacts.models import Blob, NamespaceBlob
from registry.core.blob_stores import BlobStore
from registry.core.db import batches, insert_unless_present

CanRead = Callable[[str], bool]


def _intact(session: Session, wanted: Mapping[str, int]) -> dict[str, set[str]]:
    """The digests (of ``digest -> size``) with a blob row of the wanted size that is not marked corrupt (a push
    then sends the bytes again, which repairs the stored copy), each with the namespaces holding it. Until the
    transaction ends, garbage collection cannot remove what this found
    (:func:`registry.artifacts.gc.hold_blobs_against_gc`).

    The database alone answers, one query per chunk whatever exists: the caller asks the store only about
    blobs the caller may count. A store round trip (an S3 ``HEAD`` takes milliseconds) for a blob only another
    namespace holds would tell a prober, by the answer's time, that the digest exists there.
    """
    hold_blobs_against_gc(session)
    found: dict[str, set[str]] = {}
    for chunk in batches(sorted(wanted)):
        rows = session.execute(
            select(Blob.digest, Blob.size, Blob.corrupt_at, NamespaceBlob.namespace)
            .outerjoin(NamespaceBlob, NamespaceBlob.digest == Blob.digest)
            .where(Blob.digest.in_(chunk))
        )
        for digest, size, corrupt_at, namespace in rows:
            if corrupt_at is None and size == wanted[digest]:
                owners = found.setdefault(digest, set())
                if namespace is not None:
                    owners.add(namespace)
    return found


def record_holding(session: Session, namespace: str, digests: Iterable[str]) -> None:
    """The namespace now holds these blobs (idempotent, safe under concurrent pushes)."""
    wanted = sorted(set(digests))
    for chunk in batches(wanted):
        insert_unless_present(session, NamespaceBlob, [{"namespace": namespace, "digest": d} for d in chunk])


def missing_for_push(
    session: Session, blobs: BlobStore, namespace: str, files: Mapping[str, int], can_read: CanRead
) -> list[str]:
    """Digests (of ``digest -> size``) the pusher must send; the rest are held by, or mounted into, ``namespace``.

    A stored blob counts as present only if ``namespace`` holds it or the caller may read a namespace that does;
    the latter is recorded as a mount so the commit finds it.
    """
    present: set[str] = set()
    mounts: list[str] = []
    for digest, owners in sorted(_intact(session, files).items()):
        mine = namespace in owners
        if not (mine or any(can_read(owner) for owner in sorted(owners))):
            continue  # asked for like a new blob, without asking the store (see ``_intact``)
        if blobs.exists(digest, files[digest]):
            present.add(digest)
            if not mine:
                mounts.append(digest)
    record_holding(session, namespace, mounts)
    return sorted(d for d in files if d not in present)


def held_by(session: Session, blobs: BlobStore, namespace: str, files: Mapping[str, int]) -> set[str]:
    """The digests (of ``digest -> size``) that ``namespace`` holds and the store really has."""
    held = [d for d, owners in sorted(_intact(session, files).items()) if namespace in owners]
    return {d for d in held if blobs.exists(d, files[d])}


def held_size(session: Session, namespace: str, digest: str) -> int | None:
    """The size of a blob ``namespace`` holds, or None: never says whether another namespace has it."""
    row = session.execute(
        select(Blob.size)
        .join(NamespaceBlob, NamespaceBlob.digest == Blob.digest)
        .where(Blob.digest == digest, NamespaceBlob.namespace == namespace)
    ).first()
    return int(row[0]) if row is not None else None
