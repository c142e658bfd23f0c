"""Blob integrity in the database: chunk lists, corrupt marks, and the versions a mark makes unservable.

A blob whose stored bytes were found not to match its digest (or whose file is
gone) is marked once, with an audit entry; from then on it is never served,
and every version that lists it fails the ``storage`` check of ``/v1/verify``
and gets no verification bundle. ``mir fsck`` clears a mark (audited) once the
stored bytes hash right again, e.g. after an operator restored them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import LargeBinary, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.artifacts.models import Blob, BlobChunks, Version, VersionFile
from registry.audit import log as audit
from registry.core.blob_stores import BlobStore
from registry.core.chunks import HASH_LEN, ChunkList
from registry.core.db import batches, insert_unless_present
from registry.core.tables import utcnow

CORRUPT_ACTION = "blob.corrupt"
REPAIRED_ACTION = "blob.repaired"
SYSTEM_ACTOR = "registry"


class Where(NamedTuple):
    """The version whose file was being served or checked when a blob was found bad (for the audit entry)."""

    namespace: str
    name: str
    version: str

    @classmethod
    def of(cls, version: Version) -> Where:
        return cls(version.artifact.namespace, version.artifact.name, version.version)


def record_chunks(session: Session, digest: str, chunks: ChunkList) -> None:
    """Store the chunk list of a blob whose bytes were just hashed in full (idempotent; the blob row must exist)."""
    record_chunk_lists(session, [(digest, chunks)])


def record_chunk_lists(session: Session, lists: Sequence[tuple[str, ChunkList]]) -> None:
    """:func:`record_chunks` for many blobs, in one statement."""
    insert_unless_present(
        session, BlobChunks, [{"digest": d, "chunk_size": c.chunk_size, "hashes": c.hashes} for d, c in lists]
    )


def replace_chunks(session: Session, digest: str, chunks: ChunkList) -> None:
    """Overwrite a recorded chunk list that disagrees with bytes that were just verified against the digest."""
    session.execute(
        update(BlobChunks).where(BlobChunks.digest == digest).values(chunk_size=chunks.chunk_size, hashes=chunks.hashes)
    )


def chunk_size_of(session: Session, digest: str) -> int | None:
    """The chunk size of the blob's recorded list, or None when none was recorded (blobs stored before lists)."""
    return session.scalar(select(BlobChunks.chunk_size).where(BlobChunks.digest == digest))


def chunk_hashes(session: Session, digest: str, first: int, count: int) -> ChunkList | None:
    """Hashes of chunks ``first .. first+count-1`` only (a 1 TiB blob's full list is 32 MiB), or None if unrecorded."""
    part = func.substr(BlobChunks.hashes, first * HASH_LEN + 1, count * HASH_LEN, type_=LargeBinary)
    row = session.execute(select(BlobChunks.chunk_size, part).where(BlobChunks.digest == digest)).first()
    if row is None:
        return None
    return ChunkList(int(row[0]), bytes(row[1] or b""))


def corrupt_reason(session: Session, digest: str) -> str | None:
    """Why the blob is marked unservable, or None when it is not marked."""
    row = session.execute(select(Blob.corrupt_at, Blob.corrupt_reason).where(Blob.digest == digest)).first()
    if row is None or row[0] is None:
        return None
    return str(row[1] or "stored bytes do not match the digest")


def mark_corrupt(
    session: Session, digest: str, size: int, reason: str, *, actor: str = SYSTEM_ACTOR, detected_by: str,
    where: Where | None = None, path: str | None = None,
) -> bool:
    """Mark the blob corrupt and audit it, once: returns False when it was already marked, or when ``size`` is
    not the size recorded for it.

    ``where`` and ``path`` say where it was noticed (a download of a version the caller could read). The size
    is the noticing version's claim: a blob recorded at another size was hashed whole at that size, so it is
    the claim that is wrong, and one tenant's version must not get the blob every namespace shares marked.
    """
    now = utcnow()
    result: Any = session.execute(
        update(Blob).where(Blob.digest == digest, Blob.corrupt_at.is_(None), Blob.size == size)
        .values(corrupt_at=now, corrupt_reason=reason)
    )
    if result.rowcount == 0:
        if session.scalar(select(Blob.digest).where(Blob.digest == digest)) is not None:
            return False
        try:
            with session.begin_nested():
                session.add(Blob(digest=digest, size=size, corrupt_at=now, corrupt_reason=reason))
        except IntegrityError:
            return False
    details: dict[str, Any] = {"digest": digest, "size": size, "reason": reason, "detected_by": detected_by}
    if path is not None:
        details["path"] = path
    label = where._asdict() if where is not None else {}
    audit.record(session, action=CORRUPT_ACTION, actor=actor, details=details, **label)
    return True


def clear_mark(session: Session, digest: str, *, actor: str, detected_by: str) -> bool:
    """The stored bytes hash right again: serve the blob again (audited). False when it was not marked."""
    return bool(clear_marks(session, [digest], actor=actor, detected_by=detected_by))


def clear_marks(session: Session, digests: Sequence[str], *, actor: str, detected_by: str) -> list[str]:
    """:func:`clear_mark` for many blobs: one statement, an audit entry for each blob that was marked."""
    cleared: list[str] = []
    for part in batches(digests):
        rows = session.execute(
            update(Blob).where(Blob.digest.in_(part), Blob.corrupt_at.is_not(None))
            .values(corrupt_at=None, corrupt_reason=None).returning(Blob.digest)
        )
        cleared.extend(sorted(str(d) for d in rows.scalars()))
    for digest in cleared:
        audit.record(session, action=REPAIRED_ACTION, actor=actor,
                     details={"digest": digest, "detected_by": detected_by})
    return cleared


def corrupt_digests(session: Session, version: Version) -> list[str]:
    """Digests of ``version``'s files that are marked corrupt or missing, or that the version declares at a size
    the blob does not have (never marked: see :func:`mark_corrupt`), sorted and distinct."""
    rows = session.scalars(
        select(VersionFile.digest).join(Blob, Blob.digest == VersionFile.digest)
        .where(VersionFile.version_id == version.id,
               or_(Blob.corrupt_at.is_not(None), Blob.size != VersionFile.size)).distinct()
    )
    return sorted(rows)


def corrupt_files(session: Session, version: Version, blobs: BlobStore | None = None) -> list[str]:
    """Paths of ``version`` whose stored bytes are marked bad; with ``blobs``, a file now gone is marked too.

    Checking presence costs one ``stat`` per file, so it is cheap enough for every verification.
    """
    marked = set(corrupt_digests(session, version))
    bad: list[str] = []
    for entry in version.files:
        if entry.digest in marked:
            bad.append(entry.path)
        elif blobs is not None and not blobs.exists(entry.digest, entry.size):
            mark_corrupt(session, entry.digest, entry.size, missing_reason(blobs, entry.digest, entry.size),
                         detected_by="verify", where=Where.of(version), path=entry.path)
            marked.add(entry.digest)
            bad.append(entry.path)
    return sorted(bad)


def storage_check(session: Session, blobs: BlobStore, version: Version) -> tuple[bool, str]:
    """The ``storage`` check of the deploy gate: every stored file of the version is servable."""
    bad = corrupt_files(session, version, blobs)
    if bad:
        more = f" and {len(bad) - 20} more" if len(bad) > 20 else ""
        return False, f"stored bytes are corrupt or missing: {', '.join(bad[:20])}{more}"
    return True, "every stored file is present and not marked corrupt"


def missing_reason(blobs: BlobStore, digest: str, size: int) -> str:
    """Why ``blobs.exists(digest, size)`` is false: the file is gone, or it has the wrong length."""
    try:
        found = blobs.stat(digest)
    except OSError as exc:
        return f"the stored file cannot be read: {exc.strerror or exc}"
    if found is None:
        return "the stored file is missing"
    return f"the stored file has {found[0]} bytes, the digest names {size}"
