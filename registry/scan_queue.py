"""Queueing scans at commit time (kept apart from the worker side, which needs quarantine and lineage)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from registry.models import ScanJob, Version

QUEUED, RUNNING, DONE = "queued", "running", "done"
PENDING = "pending"


def enqueue(session: Session, version: Version) -> ScanJob:
    """Queue a scan of ``version`` (at commit, or an admin's rescan)."""
    version.scan_status = PENDING
    job = ScanJob(version_id=version.id, state=QUEUED, attempts=0)
    session.add(job)
    session.flush()
    return job
