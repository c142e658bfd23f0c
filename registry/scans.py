"""Scan-on-commit: jobs in the database, verdicts per blob, a version's aggregate verdict, quarantine.

Commit enqueues a job; ``mir worker`` processes claim jobs (SKIP LOCKED on
PostgreSQL, the write lock on SQLite) and scan each blob with
``scanners.sandbox.scan_path_sandboxed`` — a child process with CPU-time and
memory limits — so no registry process ever parses, let alone unpickles,
uploaded bytes itself. A malicious verdict quarantines the version.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry import audit, quarantine
from registry.context import RegistryContext
from registry.models import ScanJob, ScanResult, Version, VersionFile, utcnow
from registry.scan_queue import DONE, QUEUED, RUNNING
from scanners.api import SCANNER_NAME
from scanners.report import Verdict, worst
from scanners.sandbox import scan_path_sandboxed

log = logging.getLogger("mir.scans")

SCANNER_VERSION = "1"
MAX_ATTEMPTS = 3


def claim(session: Session, worker: str, lease_s: float) -> ScanJob | None:
    """Take the oldest queued job (or one whose worker died past its lease)."""
    stale = utcnow() - timedelta(seconds=lease_s)
    job = session.scalar(
        select(ScanJob)
        .where(or_(ScanJob.state == QUEUED, (ScanJob.state == RUNNING) & (ScanJob.claimed_at < stale)))
        .order_by(ScanJob.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if job is None:
        return None
    job.state = RUNNING
    job.claimed_at = utcnow()
    job.claimed_by = worker
    job.attempts += 1
    return job


def _digests_to_scan(session: Session, version_id: int) -> list[str]:
    digests = list(dict.fromkeys(session.scalars(
        select(VersionFile.digest).where(VersionFile.version_id == version_id).order_by(VersionFile.path)
    )))
    done = set(session.scalars(
        select(ScanResult.blob_digest).where(
            ScanResult.blob_digest.in_(digests), ScanResult.scanner == SCANNER_NAME,
            ScanResult.scanner_version == SCANNER_VERSION,
        )
    )) if digests else set()
    return [d for d in digests if d not in done]


def _store_result(session: Session, digest: str, report: dict[str, Any]) -> None:
    row = ScanResult(
        blob_digest=digest, scanner=SCANNER_NAME, scanner_version=SCANNER_VERSION, verdict=report["verdict"],
        format=report["format"], findings=report["findings"][:200],
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        pass  # another worker scanned the same blob (shared by two versions) first


def results_for(session: Session, version_id: int) -> dict[str, ScanResult]:
    """Latest-scanner results keyed by blob digest, for the blobs of one version."""
    digests = list(session.scalars(select(VersionFile.digest).where(VersionFile.version_id == version_id)))
    if not digests:
        return {}
    rows = session.scalars(
        select(ScanResult).where(
            ScanResult.blob_digest.in_(digests), ScanResult.scanner == SCANNER_NAME,
            ScanResult.scanner_version == SCANNER_VERSION,
        )
    )
    return {r.blob_digest: r for r in rows}


def _finish(session: Session, job: ScanJob, actor: str, contamination: Verdict | None = None) -> None:
    version = session.get(Version, job.version_id)
    assert version is not None
    results = results_for(session, version.id)
    # A file without a stored result was not analysed: that is an error, never clean.
    per_file = {
        f.path: Verdict(results[f.digest].verdict) if f.digest in results else Verdict.ERROR for f in version.files
    }
    verdicts = list(per_file.values())
    if contamination is not None:  # synthetic-data contamination of a dataset: at most suspicious, or error
        verdicts.append(contamination)
    status = worst(verdicts).value if verdicts else Verdict.CLEAN.value
    version.scan_status = status
    job.state = DONE
    job.finished_at = utcnow()
    label = dict(namespace=version.artifact.namespace, name=version.artifact.name, version=version.version)
    flagged = {p: v.value for p, v in per_file.items() if v is not Verdict.CLEAN}
    audit.record(session, action="scan.completed", actor=actor, **label,
                 details={"verdict": status, "scanner": f"{SCANNER_NAME}/{SCANNER_VERSION}",
                          "manifest_digest": version.manifest_digest, "flagged_files": flagged,
                          **({"contamination": contamination.value} if contamination is not None else {})})
    from registry.contamination_jobs import flag_limits  # contamination_jobs -> policy -> scans: import at use

    flag_limits(session, version, actor)
    if status == Verdict.MALICIOUS.value:
        reason = "scan found malicious content in: " + ", ".join(p for p, v in flagged.items() if v == "malicious")
        if quarantine.active_quarantine(session, version) is None:
            quarantine.quarantine_version(session, version, reason=reason, actor=actor)


def process(ctx: RegistryContext, job_id: int, actor: str) -> None:
    """Scan every not-yet-scanned blob of the job's version in the sandbox, then record the verdict."""
    settings = ctx.settings
    with ctx.transaction() as session:
        job = session.get(ScanJob, job_id)
        assert job is not None
        digests = _digests_to_scan(session, job.version_id)
    for digest in digests:
        path = ctx.blobs.path_for(digest)
        report = scan_path_sandboxed(path, timeout_s=settings.scan_timeout_s, memory_bytes=settings.scan_memory_bytes)
        data = report.to_dict()
        with ctx.transaction() as session:
            _store_result(session, digest, data)
    from registry.contamination_jobs import analyse

    with ctx.transaction() as session:
        job = session.get(ScanJob, job_id)
        assert job is not None
        version_id = job.version_id
    contamination = analyse(ctx, version_id)  # datasets only: fingerprint match (and index), see contamination_jobs
    with ctx.transaction() as session:
        job = session.get(ScanJob, job_id)
        assert job is not None
        _finish(session, job, actor, contamination)


def run_once(ctx: RegistryContext, worker: str | None = None) -> bool:
    """Claim and process one job; False when the queue is empty."""
    worker = worker or f"{socket.gethostname()}:{os.getpid()}"
    with ctx.transaction() as session:
        job = claim(session, worker, ctx.settings.scan_lease_s)
        if job is None:
            return False
        job_id, attempts = job.id, job.attempts
        if attempts > MAX_ATTEMPTS:
            job.state = DONE
            job.finished_at = utcnow()
            job.error = f"gave up after {MAX_ATTEMPTS} attempts"
            version = session.get(Version, job.version_id)
            assert version is not None
            version.scan_status = Verdict.ERROR.value
            audit.record(session, action="scan.failed", actor=f"scan-worker {worker}",
                         namespace=version.artifact.namespace, name=version.artifact.name, version=version.version,
                         details={"error": job.error})
            return True
    try:
        process(ctx, job_id, f"scan-worker {worker}")
    except Exception:
        log.exception("scan job %s failed; it will be retried", job_id)
        with ctx.transaction() as session:
            job = session.get(ScanJob, job_id)
            if job is not None:
                job.state = QUEUED
                job.error = "worker error; retrying"
    return True


def version_scan_summary(session: Session, version: Version) -> dict[str, Any]:
    results = results_for(session, version.id)
    files = []
    for f in version.files:
        r = results.get(f.digest)
        files.append({
            "path": f.path, "digest": f.digest,
            "verdict": r.verdict if r else None, "format": r.format if r else None,
            "findings": r.findings if r else [],
        })
    from registry.synthetic import fingerprint_summary

    return {"status": version.scan_status, "scanner": f"{SCANNER_NAME}/{SCANNER_VERSION}", "files": files,
            "contamination": fingerprint_summary(session, version)}
