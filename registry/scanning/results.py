"""Scan-on-commit: verdicts per blob, a version's aggregate verdict, quarantine.

Commit enqueues a job; ``mir worker`` processes share its blobs as tasks (registry.scanning.tasks: SKIP LOCKED
leases on PostgreSQL, the write lock on SQLite) and scan each blob with
``scanners.sandbox.scan_path_sandboxed`` — a child process with CPU-time and
memory limits — so no registry process ever parses, let alone unpickles,
uploaded bytes itself. A malicious verdict quarantines the version.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session, joinedload

from registry.artifacts.models import Version, VersionFile
from registry.artifacts.versions import COMMITTED
from registry.audit import log as audit
from registry.core.context import RegistryContext
from registry.core.db import batches
from registry.core.tables import utcnow
from registry.lineage import quarantine
from registry.lineage.graph import CanRead, everyone
from registry.scanning.models import ScanJob, ScanResult
from registry.scanning.queue import DONE, PENDING, QUEUED, RUNNING, enqueue
from registry.synthetic.limits import flag_limits
from registry.synthetic.provenance import fingerprint_summary
from scanners.api import SCANNER_NAME
from scanners.globals_policy import UNLISTED
from scanners.report import Finding, Verdict, worst
from scanners.sandbox import scan_path_sandboxed

log = logging.getLogger("mir.scans")

# Bump whenever a verdict or what policy reads from findings can change.
# 2: sklearn allowlist, out-of-band buffers, frames, 7z, GGUF, Keras, HDF5, ONNX.
# 3: findings carry a rule ("unlisted-global") that a namespace policy's trusted_globals can lift; pickle expansion
# (billion laughs) and a late PROTO are suspicious; chat templates in JSON configs are analysed.
SCANNER_VERSION = "3"
_UPGRADE_LOCK_KEY = 0x6D697273  # "mirs": one worker at a time queues rescans after a scanner upgrade
MAX_ATTEMPTS = 3  # per job (claims to finish it) and per blob task (scans of it)
GAVE_UP = "gave up after"  # a dead-lettered job's or task's error starts with this (counted in /metrics)
HISTORY_PER_FILE = 50
MAX_STORED_FINDINGS = 200


# Built once: a statement built per call spends as much CPU on its cache key as on running.
_VERSION_DIGESTS = select(VersionFile.digest).where(VersionFile.version_id == bindparam("version_id")) \
    .order_by(VersionFile.path)
_CURRENT_RESULTS = (ScanResult.blob_digest.in_(bindparam("digests", expanding=True)),
                    ScanResult.scanner == SCANNER_NAME, ScanResult.scanner_version == SCANNER_VERSION)
_LATEST_VERDICTS = select(ScanResult.blob_digest, ScanResult.verdict).where(*_CURRENT_RESULTS).order_by(ScanResult.id)
_LATEST_RESULTS = select(ScanResult).where(*_CURRENT_RESULTS).order_by(ScanResult.id)
_WITH_ARTIFACT = (joinedload(Version.artifact),)


def scan_plan(session: Session, version_id: int, *, rescan: bool) -> tuple[list[str], dict[str, str]]:
    """The version's blobs to scan, and the verdict each of them had before (none where it has no result).

    All of its blobs for a rescan, else those whose latest current-scanner result is missing or an ``error`` (a
    blob shared with earlier versions is not scanned again, a failure is). One look-up of results for both.
    """
    digests = list(dict.fromkeys(session.scalars(_VERSION_DIGESTS, {"version_id": version_id})))
    verdicts = latest_verdicts(session, digests)
    if not rescan:
        digests = [d for d in digests if verdicts.get(d, Verdict.ERROR.value) == Verdict.ERROR.value]
    return digests, {d: verdicts[d] for d in digests if d in verdicts}


def load_version(session: Session, version_id: int) -> Version | None:
    """The version with its artifact, in one query (a finish reads both); from the session if already there."""
    return session.get(Version, version_id, options=_WITH_ARTIFACT)


def store_result(session: Session, digest: str, report: dict[str, Any]) -> None:
    """Add a result; earlier ones for the same blob stay as its history (the highest id is the latest).

    At most ``MAX_STORED_FINDINGS`` are kept; the rest become one summary finding of their worst severity, with
    no rule, so a policy never lifts a file for what it could not see.
    """
    findings = report["findings"]
    if len(findings) > MAX_STORED_FINDINGS:
        rest = findings[MAX_STORED_FINDINGS - 1:]
        severity = worst([Verdict(f["severity"]) for f in rest])
        findings = [*findings[:MAX_STORED_FINDINGS - 1], Finding(
            severity, f"{len(rest)} more findings not stored").to_dict()]
    session.add(ScanResult(
        blob_digest=digest, scanner=SCANNER_NAME, scanner_version=SCANNER_VERSION, verdict=report["verdict"],
        format=report["format"], findings=findings,
    ))


def unlisted_globals(result: ScanResult) -> list[str]:
    """The globals that alone made a suspicious file suspicious; empty if anything else did (or it is not
    suspicious). The policy engine may count such a file clean when its namespace trusts every one of them."""
    if result.verdict != Verdict.SUSPICIOUS.value:
        return []
    names: set[str] = set()
    for finding in result.findings:
        if not isinstance(finding, dict) or finding.get("severity") == Verdict.CLEAN.value:
            continue
        symbol = finding.get("symbol")
        if finding.get("rule") != UNLISTED or finding.get("severity") != Verdict.SUSPICIOUS.value \
                or not isinstance(symbol, str):
            return []
        names.add(symbol)
    return sorted(names)


def latest_verdicts(session: Session, digests: list[str]) -> dict[str, str]:
    """The verdict of the latest current-scanner result of each of ``digests`` (those that have one)."""
    return {digest: verdict for part in batches(list(dict.fromkeys(digests)))
            for digest, verdict in session.execute(_LATEST_VERDICTS, {"digests": part})}


def results_for(session: Session, version_id: int) -> dict[str, ScanResult]:
    """The latest current-scanner result for each blob of one version, keyed by digest."""
    return latest_results(session, list(session.scalars(_VERSION_DIGESTS, {"version_id": version_id})))


def latest_results(session: Session, digests: list[str]) -> dict[str, ScanResult]:
    """The latest current-scanner result for each of ``digests`` (those that have one)."""
    return {r.blob_digest: r for part in batches(list(dict.fromkeys(digests)))
            for r in session.scalars(_LATEST_RESULTS, {"digests": part})}


def _scan_times(session: Session, version_id: int) -> list[datetime]:
    """When each finished scan of this version (commit, rescan, refresh) ended, oldest first."""
    return [t for t in session.scalars(
        select(ScanJob.finished_at).where(ScanJob.version_id == version_id, ScanJob.state == DONE)
        .order_by(ScanJob.finished_at)
    ) if t is not None]


def seen_by_version(session: Session, version_id: int) -> dict[str, list[tuple[ScanResult, datetime]]]:
    """For each blob of one version, the results its own scans decided from, oldest first, each with the end of
    the first of those scans that used it.

    Blobs are shared, so a blob's results may come from another namespace's push, before or after this version.
    Only what this version's scans used is shown, and at the time they ended: a verdict reused from an earlier
    upload reads exactly like one first scanned for this version, so neither its time nor its history reveals
    that the bytes existed elsewhere. The verdict itself is the shared one (same bytes, same verdict).
    """
    digests = list(dict.fromkeys(session.scalars(
        select(VersionFile.digest).where(VersionFile.version_id == version_id)
    )))
    seen: dict[str, list[tuple[ScanResult, datetime]]] = {d: [] for d in digests}
    times = _scan_times(session, version_id)
    if not digests or not times:
        return seen
    rows: dict[str, list[ScanResult]] = {d: [] for d in digests}
    for part in batches(digests):  # each digest is in one slice, so its rows stay in id order
        for row in session.scalars(
            select(ScanResult).where(ScanResult.blob_digest.in_(part), ScanResult.scanner == SCANNER_NAME,
                                     ScanResult.created_at <= times[-1]).order_by(ScanResult.id)
        ):
            rows[row.blob_digest].append(row)
    for digest, results in rows.items():
        used: dict[int, tuple[ScanResult, datetime]] = {}
        for t in times:
            before = [r for r in results if r.created_at <= t]
            current = [r for r in before if r.scanner_version == SCANNER_VERSION]
            if before:  # what finish_job took: the latest current-scanner result, else the latest of any
                pick = (current or before)[-1]
                used.setdefault(pick.id, (pick, t))
        seen[digest] = list(used.values())
    return seen


def finish_job(session: Session, job: ScanJob, actor: str, contamination: Verdict | None = None,
            failed: Mapping[str, str] | None = None, *, finished_by: str | None = None) -> None:
    """Record the version's verdict from its blobs' latest results, end the job, audit, quarantine if malicious.

    ``failed`` maps the digests of dead-lettered blobs to why: those files count as ``error`` (even where an
    older result exists), the job ends with the reason, and the audit entry is ``scan.failed``.
    ``finished_by``: the worker finishing it, recorded on the job row (written with the job's end, one UPDATE).
    """
    failed = failed or {}
    version = load_version(session, job.version_id)
    assert version is not None
    results = latest_results(session, [f.digest for f in version.files])  # the files are read anyway, below
    # A file without a stored result was not analysed: that is an error, never clean.
    per_file = {
        f.path: Verdict(results[f.digest].verdict) if f.digest in results and f.digest not in failed
        else Verdict.ERROR for f in version.files
    }
    verdicts = list(per_file.values())
    if contamination is not None:  # synthetic-data contamination of a dataset: at most suspicious, or error
        verdicts.append(contamination)
    status = worst(verdicts).value if verdicts else Verdict.CLEAN.value
    previous = version.scan_status
    version.scan_status = status
    version.scanner_version = SCANNER_VERSION
    job.state = DONE
    job.finished_at = utcnow()
    job.error = None
    if finished_by is not None:
        job.claimed_by = finished_by
    if failed:
        paths = sorted({f.path for f in version.files if f.digest in failed})
        job.error = f"{GAVE_UP} {MAX_ATTEMPTS} attempts on {', '.join(paths)}: {next(iter(failed.values()))}"
    label = dict(namespace=version.artifact.namespace, name=version.artifact.name, version=version.version)
    flagged = {p: v.value for p, v in per_file.items() if v is not Verdict.CLEAN}
    audit.record(session, action="scan.failed" if failed else "scan.completed", actor=actor, **label,
                 details={**({"error": job.error} if job.error else {}), "verdict": status,
                          "scanner": f"{SCANNER_NAME}/{SCANNER_VERSION}", "manifest_digest": version.manifest_digest,
                          "flagged_files": flagged,
                          **({"rescan": True} if job.rescan else {}),
                          **({"previous_verdict": previous} if previous not in (None, PENDING) else {}),
                          **({"contamination": contamination.value} if contamination is not None else {})})
    flag_limits(session, version, actor)
    if status == Verdict.MALICIOUS.value:
        reason = "scan found malicious content in: " + ", ".join(p for p, v in flagged.items() if v == "malicious")
        if quarantine.active_quarantine(session, version) is None:
            quarantine.quarantine_version(session, version, reason=reason, actor=actor)


def scan_blob(ctx: RegistryContext, digest: str) -> dict[str, Any]:
    """One blob's report from the sandbox, read from a local file: the stored file itself, or a bounded copy
    spooled from an object store and removed afterwards."""
    settings = ctx.settings
    with ctx.blobs.local_copy(digest, settings.resolved_scan_spool_dir, settings.max_blob_size) as path:
        report = scan_path_sandboxed(path, timeout_s=settings.scan_timeout_s,
                                     memory_bytes=settings.scan_memory_bytes)
    return report.to_dict()


def refresh_sharers(session: Session, version_id: int, digests: set[str]) -> None:
    """Other committed versions holding a blob whose verdict a rescan changed get their verdict recomputed.

    Their job finds current results for those blobs, so it only re-aggregates (and quarantines if malicious).
    """
    open_jobs = select(ScanJob.version_id).where(ScanJob.state.in_((QUEUED, RUNNING)))
    sharers: dict[int, Version] = {}
    for part in batches(sorted(digests)):
        sharers.update((v.id, v) for v in session.scalars(select(Version).where(
            Version.id != version_id, Version.state == COMMITTED, Version.id.not_in(open_jobs),
            Version.id.in_(select(VersionFile.version_id).where(VersionFile.digest.in_(part))),
        )))
    for _id, version in sorted(sharers.items()):
        enqueue(session, version, mark_pending=False)


def queue_upgrade_rescans(ctx: RegistryContext) -> int:
    """Queue, once, a background rescan of every version last scanned by an older scanner version.

    Each worker calls this at start; one at a time (an advisory lock on PostgreSQL, the write lock on
    SQLite), and a version with a queued or running job is skipped, so concurrent workers queue nothing twice.
    Verdicts stay as they are until the new scan finishes.
    """
    with ctx.transaction() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK_KEY})
        open_jobs = select(ScanJob.version_id).where(ScanJob.state.in_((QUEUED, RUNNING)))
        stale = list(session.scalars(
            select(Version).where(
                Version.state == COMMITTED, Version.scanner_version.is_not(None),
                Version.scanner_version != SCANNER_VERSION, Version.id.not_in(open_jobs),
            ).order_by(Version.id)
        ))
        for version in stale:
            enqueue(session, version, mark_pending=False)
        if stale:
            log.info("queued %d rescans for scanner %s/%s", len(stale), SCANNER_NAME, SCANNER_VERSION)
        return len(stale)


def _result_to_dict(r: ScanResult, at: datetime) -> dict[str, Any]:
    return {"verdict": r.verdict, "format": r.format, "scanner": f"{r.scanner}/{r.scanner_version}",
            "scanned_at": at.isoformat(), "findings": r.findings}


def version_scan_summary(session: Session, version: Version, *, can_read: CanRead = everyone) -> dict[str, Any]:
    """Each file's verdict from this version's latest finished scan, plus the earlier ones (``history``, newest
    first; rescans add to it). ``scanned_at`` is when that scan of this version ended (see ``seen_by_version``):
    empty while the first scan runs."""
    seen = seen_by_version(session, version.id)
    files = []
    for f in version.files:
        used = seen.get(f.digest, [])
        latest = used[-1] if used and used[-1][0].scanner_version == SCANNER_VERSION else None
        earlier = used[:-1] if latest is not None else used
        files.append({
            "path": f.path, "digest": f.digest,
            "verdict": latest[0].verdict if latest else None, "format": latest[0].format if latest else None,
            "findings": latest[0].findings if latest else [],
            "scanned_at": latest[1].isoformat() if latest else None,
            "history": [_result_to_dict(r, at) for r, at in reversed(earlier[-HISTORY_PER_FILE:])],
        })
    return {"status": version.scan_status, "scanner": f"{SCANNER_NAME}/{SCANNER_VERSION}",
            "scanned_with": f"{SCANNER_NAME}/{version.scanner_version}" if version.scanner_version else None,
            "files": files, "contamination": fingerprint_summary(session, version, can_read)}
