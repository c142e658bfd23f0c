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
