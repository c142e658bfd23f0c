"""Queueing scans at commit time (kept apart from the worker side, which needs quarantine and lineage)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from registry.artifacts.models import Version
from registry.scanning.models import ScanJob

QUEUED, RUNNING, DONE = "queued", "running", "done"
PENDING = "pending"


def enqueue(session: Session, version: Version, *, rescan: bool = False, mark_pending: bool = True) -> ScanJob:
    """Queue a scan of ``version`` (at commit, an admin's rescan, or after a scanner upgrade).

    ``rescan`` re-runs the scanners on every blob even where a result exists. ``mark_pending=False`` keeps the
    current verdict until the job finishes (background rescans must not block every deploy meanwhile).
    """
    if mark_pending:
        version.scan_status = PENDING
    job = ScanJob(version_id=version.id, state=QUEUED, attempts=0, rescan=rescan)
    session.add(job)
    session.flush()
    return job
