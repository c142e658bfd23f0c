"""Tables of the scanning domain. Changed only through migrations/."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from registry.core.tables import Base, UTCDateTime, utcnow


class ScanJob(Base):
    """Work for the scan workers: scan every blob of one committed version."""

    __tablename__ = "scan_jobs"
    __table_args__ = (Index("ix_scan_jobs_state", "state", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    # A rescan re-runs the scanners on every blob; a commit's scan skips blobs that already have a result.
    rescan: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ScanTask(Base):
    """One blob of a running scan job: the unit that workers share, so N workers split one large version.

    A worker that claims a job expands it into tasks in the same transaction; any worker then claims a queued
    task (or one whose lease ran out), scans that blob and marks it done. A task whose attempts run out is done
    with ``error`` set (dead-lettered): the job then ends as ``error`` rather than dropping the blob.
    """

    __tablename__ = "scan_tasks"
    __table_args__ = (
        Index("ix_scan_tasks_state", "state", "id"),
        UniqueConstraint("job_id", "blob_digest", name="uq_scan_tasks_job_blob"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("scan_jobs.id", ondelete="CASCADE"), index=True)
    blob_digest: Mapped[str] = mapped_column(String(80))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    # The blob's latest current-scanner verdict when the job was expanded: a rescan that changes it refreshes
    # the other versions holding the blob.
    previous_verdict: Mapped[str | None] = mapped_column(String(16))


class ScanResult(Base):
    """One scanner's report on one blob. Blobs are shared; rescans add rows, so the latest (highest id) wins
    and the older ones stay as history."""

    __tablename__ = "scan_results"
    __table_args__ = (Index("ix_scan_results_blob_scanner", "blob_digest", "scanner", "scanner_version", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    blob_digest: Mapped[str] = mapped_column(String(80), index=True)
    scanner: Mapped[str] = mapped_column(String(64))
    scanner_version: Mapped[str] = mapped_column(String(32))
    verdict: Mapped[str] = mapped_column(String(16))
    format: Mapped[str] = mapped_column(String(64))
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
