"""Garbage collection of blobs nothing references: what aborted pushes and failed commits leave behind.

A blob may go only when no version (committed or still open) lists it, and it has not been written or
recorded for ``min_age``: a Hugging Face client uploads LFS files *before* the commit that lists them, so
young unreferenced blobs are uploads in flight. Stored files without any blob row (inline files of a Hub
commit that failed after writing them) are collected by the same rules.

Collection and commits must not interleave: a commit checks that its blobs exist and then lists them, and a
collection between the two would leave a committed version without its bytes. Every existence check
(:func:`registry.artifacts.holdings`) takes :func:`hold_blobs_against_gc`, a shared lock, for the rest of its
transaction; collection takes the same lock exclusively for each short batch, re-checks each blob under it,
and deletes rows and stored bytes before letting go. On SQLite every transaction already holds the database's
write lock (``BEGIN IMMEDIATE``), which gives the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import delete, exists, select, text
from sqlalchemy.orm import Session

from registry.artifacts.models import Blob, BlobChunks, NamespaceBlob, VersionFile
from registry.audit import log as audit
from registry.core.tables import utcnow

GC_LOCK_KEY = 0x6D697267  # "mirg"
DEFAULT_MIN_AGE = timedelta(hours=24)
BATCH = 100
AUDIT_LISTED = 100


class CollectableStore(Protocol):
    """What collection needs of a blob store (local directory or S3)."""

    def stat(self, digest: str) -> tuple[int, datetime] | None: ...

    def iter_digests(self) -> Iterator[tuple[str, int, datetime]]: ...

    def delete(self, digest: str) -> None: ...


Transaction = Callable[[], AbstractContextManager[Session]]


def hold_blobs_against_gc(session: Session) -> None:
    """For the rest of this transaction, no collection can delete a blob (PostgreSQL; SQLite serialises).

    Taken once per transaction (a push asks at open, for inline contents and at commit): the lock lasts until
    the transaction ends, or until the savepoint it was taken in rolls back, so it is noted per (sub)transaction.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    current = session.get_nested_transaction() or session.get_transaction()
    if current is not None and session.info.get(_GC_HOLD) is current:
        return
    session.execute(text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": GC_LOCK_KEY})
    session.info[_GC_HOLD] = current


_GC_HOLD = "mir.gc_hold"


def _exclusive(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": GC_LOCK_KEY})


@dataclass
class Collected:
    digest: str
    size: int
    reason: str  # "unreferenced" (a blob row no version lists) or "orphan file" (stored bytes without a row)


@dataclass
class GcReport:
    dry_run: bool
    min_age: timedelta
    collected: list[Collected] = field(default_factory=list)
    kept_young: int = 0  # unreferenced, but written or recorded within min_age: maybe an upload in flight
    kept_referenced: int = 0  # a version listed it by the time its batch ran

    @property
    def bytes_freed(self) -> int:
        return sum(c.size for c in self.collected)


def _unreferenced_rows(session: Session) -> list[tuple[str, int, datetime]]:
    listed = exists().where(VersionFile.digest == Blob.digest)
    rows = session.execute(select(Blob.digest, Blob.size, Blob.created_at).where(~listed).order_by(Blob.digest))
    return [(d, int(s), c) for d, s, c in rows]


def collect(transaction: Transaction, blobs: CollectableStore, *, min_age: timedelta = DEFAULT_MIN_AGE,
            dry_run: bool = False, actor: str = "mir gc", now: datetime | None = None) -> GcReport:
    """Delete (or, with ``dry_run``, list) every blob that nothing references and that is older than ``min_age``."""
    cutoff = (now or utcnow()) - min_age
    report = GcReport(dry_run=dry_run, min_age=min_age)
    with transaction() as s:
        rows = _unreferenced_rows(s)
        known = set(s.scalars(select(Blob.digest)))
    candidates = [(d, "unreferenced") for d, _size, created in rows if created < cutoff]
    report.kept_young += len(rows) - len(candidates)
    for digest, _size, written in blobs.iter_digests():
        if digest not in known:
            if written < cutoff:
                candidates.append((digest, "orphan file"))
            else:
                report.kept_young += 1
    for start in range(0, len(candidates), BATCH):
        _collect_batch(transaction, blobs, candidates[start:start + BATCH], cutoff, report)
    if report.collected and not dry_run:
        with transaction() as s:
            audit.record(s, action="blobs.collected", actor=actor, details={
                "count": len(report.collected), "bytes": report.bytes_freed,
                "min_age_s": int(min_age.total_seconds()),
                "digests": [c.digest for c in report.collected[:AUDIT_LISTED]],
            })
    return report


def _collect_batch(transaction: Transaction, blobs: CollectableStore, batch: list[tuple[str, str]],
                   cutoff: datetime, report: GcReport) -> None:
    """Re-check each candidate under the exclusive lock, then delete its rows and its bytes before releasing."""
    with transaction() as s:
        _exclusive(s)
        for digest, reason in batch:
            if s.scalar(select(exists().where(VersionFile.digest == digest))):
                report.kept_referenced += 1
                continue
            row = s.get(Blob, digest)
            if (row is None) != (reason == "orphan file") or (row is not None and row.created_at >= cutoff):
                report.kept_young += 1  # recorded (again) since the listing: an upload in flight
                continue
            stored = blobs.stat(digest)
            if stored is not None and stored[1] >= cutoff:
                report.kept_young += 1  # its bytes were just written again
                continue
            size = row.size if row is not None else stored[0] if stored is not None else 0
            report.collected.append(Collected(digest, size, reason))
            if report.dry_run:
                continue
            s.execute(delete(NamespaceBlob).where(NamespaceBlob.digest == digest))
            s.execute(delete(BlobChunks).where(BlobChunks.digest == digest))
            s.execute(delete(Blob).where(Blob.digest == digest))
            blobs.delete(digest)
