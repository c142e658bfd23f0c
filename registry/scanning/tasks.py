"""Scan work shared per blob by every worker: claim, scan, complete, finalise; leases, retries, dead letters.

A scan job (one committed version) is expanded into one task per blob to scan by the worker that claims it, in
the same transaction. Any worker then claims a queued task, or one whose lease (``scan_lease_s``) ran out
because its worker died, with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite takes its write lock at BEGIN,
so claims are serial there), scans that blob and stores its result; so N workers share one large version.

A failed attempt goes back to the queue at once; the ``MAX_ATTEMPTS``-th failure (or a lease that runs out on
the last attempt) dead-letters the task: it is done with the reason, and its job ends as ``error``.

Every task becomes done while its job's row is locked, so exactly one worker sees the last one done and takes
the job's finalisation (contamination step, verdict, quarantine, audit), renewing the job's lease. If that
worker dies or fails, the job (still running, every task done) is finalised by the next worker once that lease
runs out, at most ``MAX_ATTEMPTS`` times; the finishing transaction locks the job and ends it only if it is
still running, so ``scan.completed`` is recorded once.

A worker whose database fails just as it records an outcome (a task's failure or result, a failed finish's
release) keeps what it holds (:class:`NotHandedBack`) and hands it back on its next loops, once the database
answers, rather than leaving it claimed until the lease runs out. A commit that succeeded although the worker
saw an error (a lost reply) is recognised by the task being done by this worker: then the job, if it is still
this worker's and has nothing left, is finalised as it would have been.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, or_, select, true
from sqlalchemy.orm import Session

from registry.artifacts.models import Version
from registry.artifacts.versions import record_version_event
from registry.core.context import RegistryContext
from registry.core.tables import utcnow
from registry.scanning.models import ScanJob, ScanTask
from registry.scanning.queue import DONE, QUEUED, RUNNING
from registry.scanning.results import (
    GAVE_UP,
    MAX_ATTEMPTS,
    SCANNER_VERSION,
    finish_job,
    latest_verdicts,
    load_version,
    refresh_sharers,
    scan_blob,
    scan_plan,
    store_result,
)
from scanners.report import Verdict

log = logging.getLogger("mir.scans")

DEAD = f"{GAVE_UP} {MAX_ATTEMPTS} attempts: "  # a dead-lettered task's error: this, then the last reason
LEASE_LOST = "its worker stopped before finishing (lease expired)"
FINISH_FAILED = "worker error while finishing; retrying"
MAX_REASON = 500


@dataclass(frozen=True)
class ClaimedTask:
    id: int
    job_id: int
    digest: str
    attempts: int


class NotHandedBack(Exception):
    """A task or job this worker claimed, whose outcome it could not record nor hand back: the database failed.

    Left alone it would stay claimed until its lease ran out (an hour by default) although its worker is alive.
    The worker keeps it and hands it back with :func:`hand_back` on its next loops, once the database answers:
    a task goes back to the queue (the attempt counts), a job to whichever worker finishes it next.
    """

    def __init__(self, reason: str, *, task: ClaimedTask | None = None, job_id: int | None = None) -> None:
        held = f"task {task.id}" if task is not None else f"job {job_id}"
        super().__init__(f"could not hand back {held}: {reason}")
        self.reason, self.task, self.job_id = reason, task, job_id


def hand_back(ctx: RegistryContext, owed: list[NotHandedBack], worker: str) -> list[NotHandedBack]:
    """Hand back what earlier loops could not; returns what still could not be (the database still fails)."""
    left = []
    for item in owed:
        try:
            if item.task is not None:
                if fail_task(ctx, item.task, worker, item.reason):
                    finalise(ctx, item.task.job_id, worker)
            elif item.job_id is not None:
                _release_job(ctx, item.job_id, worker)
        except NotHandedBack as still:  # the task went back, but the job it completed could not be released
            left.append(still)
        except Exception as exc:  # one line per loop while the database is down, not a traceback
            log.warning("could not hand back scan work yet (%s: %s); retrying on the next loop", item, exc)
            left.append(item)
    return left


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_once(ctx: RegistryContext, worker: str | None = None) -> bool:
    """Do one unit of work, in this order: a new job's expansion (and the scan of its first blob), a job whose
    finaliser died, a blob's scan (finishing the job if it was the last). False when there is nothing to do.

    Expanding is quick (no bytes are read), so every queued version has its tasks at once, and ``claim_task``
    can give a version that no worker is scanning the next free worker: one tenant's version of many blobs
    does not hold every worker while another tenant's waits. The expanding worker takes the job's first blob in
    the same transaction: a version of one file costs one claim, not a claim of its job and then of its task.
    """
    worker = worker or default_worker_id()
    lease_s = ctx.settings.scan_lease_s
    expanded = _expand(ctx, worker, lease_s, take_first=True)
    if expanded is not None:
        job_id, ready, task = expanded
        if ready or (task is not None and run_task(ctx, task, worker)):
            finalise(ctx, job_id, worker)
        return True
    unfinished = claim_unfinished(ctx, worker, lease_s)
    if unfinished is not None:
        job_id, ready = unfinished
        if ready:
            finalise(ctx, job_id, worker)
        return True
    task = claim_task(ctx, worker, lease_s)
    if task is None:
        return False
    if run_task(ctx, task, worker):
        finalise(ctx, task.job_id, worker)
    return True


def claim_task(ctx: RegistryContext, worker: str, lease_s: float) -> ClaimedTask | None:
    """Take a queued task, or one whose worker died (its lease ran out): the oldest of a job that no worker is
    scanning now, else the oldest. So N workers share one large version, yet a version queued behind it gets
    the next free worker instead of waiting for all of its blobs."""
    stale = utcnow() - timedelta(seconds=lease_s)
    claimable = or_(ScanTask.state == QUEUED, (ScanTask.state == RUNNING) & (ScanTask.claimed_at < stale))
    scanning = select(ScanTask.job_id).where(ScanTask.state == RUNNING, ScanTask.claimed_at >= stale)
    with ctx.transaction() as s:
        task = None
        for preferred in (ScanTask.job_id.not_in(scanning), true()):
            task = s.scalar(select(ScanTask).where(claimable, preferred)
                            .order_by(ScanTask.id).limit(1).with_for_update(skip_locked=True))
            if task is not None:
                break
        if task is None:
            return None
        task.state, task.claimed_at, task.claimed_by = RUNNING, utcnow(), worker
        task.attempts += 1
        return ClaimedTask(task.id, task.job_id, task.blob_digest, task.attempts)


def run_task(ctx: RegistryContext, task: ClaimedTask, worker: str) -> bool:
    """Scan the task's blob and store its result; True when this completed the job's last task (the caller
    then finalises the job)."""
    if task.attempts > MAX_ATTEMPTS:  # the last attempt's worker died: no more tries
        return fail_task(ctx, task, worker, LEASE_LOST)
    try:
        report = scan_blob(ctx, task.digest)
    except Exception as exc:
        log.exception("scanning blob %s (task %s, attempt %s) failed", task.digest, task.id, task.attempts)
        # The kind of failure only: the reason reaches the job's error and its scan.failed audit entry, which
        # the namespace's readers read, and the message may name the store's endpoint, bucket and keys or the
        # worker's paths (the log above has it in full).
        reason = type(exc).__name__[:MAX_REASON]
        try:
            return fail_task(ctx, task, worker, reason)
        except Exception as db_error:
            raise NotHandedBack(reason, task=task) from db_error
    return _complete_task(ctx, task, worker, report)


# Built once: a statement built per call spends as much CPU on its cache key as on running.
_LOCK_JOB = select(ScanJob).where(ScanJob.id == bindparam("job_id")).with_for_update() \
    .execution_options(populate_existing=True)
_TASKS_OF_JOB = select(ScanTask).where(ScanTask.job_id == bindparam("job_id"))
_TASKS_LEFT = select(func.count()).select_from(ScanTask).where(ScanTask.job_id == bindparam("job_id"),
                                                               ScanTask.state != DONE)
_OLDEST_QUEUED_JOB = select(ScanJob).where(ScanJob.state == QUEUED).order_by(ScanJob.id).limit(1) \
    .with_for_update(skip_locked=True)


def _lock_job(s: Session, job_id: int) -> ScanJob | None:
    """The job's row, locked until the transaction ends: every task reaches done under this lock."""
    return s.scalar(_LOCK_JOB, {"job_id": job_id})


def _tasks_of(s: Session, job_id: int) -> list[ScanTask]:
    return list(s.scalars(_TASKS_OF_JOB, {"job_id": job_id}))


def _complete_task(ctx: RegistryContext, task: ClaimedTask, worker: str, report: dict[str, Any]) -> bool:
    """Store the blob's result; when it was the job's last, finish the job in the same transaction where no
    contamination step must run first (three transactions were one for the result, one to read the tasks, one
    to finish). True when the job is left for :func:`finalise`. Should the finish fail, the result is stored
    on its own and the job left to :func:`finalise`, which retries and records why."""
    try:
        return _store_and_finish(ctx, task, worker, report, finish_here=True)
    except Exception:
        log.exception("finishing scan job %s with its last result failed; finishing it apart", task.job_id)
    try:
        return _store_and_finish(ctx, task, worker, report, finish_here=False)
    except Exception as exc:  # the result is lost: the task goes back to the queue, to be scanned again
        raise NotHandedBack(f"result not stored: {type(exc).__name__}"[:MAX_REASON], task=task) from exc


def _store_and_finish(
    ctx: RegistryContext, task: ClaimedTask, worker: str, report: dict[str, Any], *, finish_here: bool
) -> bool:
    with ctx.transaction() as s:
        job = _lock_job(s, task.job_id)
        row = s.get(ScanTask, task.id, populate_existing=True)
        if job is not None and row is not None and row.state == DONE and row.claimed_by == worker:
            # This worker's own result committed though it saw an error (a lost reply to COMMIT).
            return _still_ours_to_finish(s, job, worker)
        if job is None or row is None or job.state != RUNNING or row.state == DONE:
            # Our lease ran out and another worker finished the blob first: its result stands.
            log.info("task %s was finished by %s meanwhile; dropping this result", task.id,
                     row.claimed_by if row is not None else "another worker")
            return False
        store_result(s, row.blob_digest, report)
        row.state, row.finished_at, row.claimed_by, row.error = DONE, utcnow(), worker, None
        if not _none_left(s, job):
            return False
        if finish_here and _finish_unless_contamination(s, job, worker):
            return False
        _renew_lease(job, worker)
        return True


def _finish_unless_contamination(s: Session, job: ScanJob, worker: str) -> bool:
    """Finish the job (locked, every task done) here, unless it is a dataset whose contamination step must run
    first, outside any transaction (it may take seconds): then False, and :func:`finalise` does both."""
    version = load_version(s, job.version_id)  # held here, so the finish finds it (and its artifact) in the session
    if version is None or version.artifact.kind == "dataset":  # finalise reads the tasks itself
        return False
    failed, previous = _outcome(_tasks_of(s, job.id))
    _finish(s, job, worker, None, failed, previous)
    return True


def _outcome(tasks: list[ScanTask]) -> tuple[dict[str, str], dict[str, str | None]]:
    """The dead-lettered blobs (digest to why) and, for the others, the verdict each had before the job."""
    failed = {t.blob_digest: (t.error or "").removeprefix(DEAD) for t in tasks if t.error and t.state == DONE}
    previous = {t.blob_digest: t.previous_verdict for t in tasks if t.blob_digest not in failed}
    return failed, previous


def _kind(s: Session, version_id: int) -> str | None:
    version = load_version(s, version_id)
    return version.artifact.kind if version is not None else None


def _finish(s: Session, job: ScanJob, worker: str, contamination: Verdict | None, failed: dict[str, str],
            previous: dict[str, str | None]) -> None:
    """End the locked job with its verdict; after a rescan, refresh the versions that share a changed blob."""
    finish_job(s, job, f"scan-worker {worker}", contamination, failed, finished_by=worker)
    if job.rescan:
        changed = {d for d, v in latest_verdicts(s, list(previous)).items() if previous[d] != v}
        refresh_sharers(s, job.version_id, changed)


def fail_task(ctx: RegistryContext, task: ClaimedTask, worker: str, reason: str) -> bool:
    """Put the task back in the queue, or dead-letter it after its last attempt; True when that completed the
    job's last task."""
    with ctx.transaction() as s:
        job = _lock_job(s, task.job_id)
        row = s.get(ScanTask, task.id, populate_existing=True)
        if job is None or row is None or row.claimed_by != worker:
            return False  # taken over meanwhile
        if row.state == DONE:  # this worker's own outcome committed though it saw an error (a lost reply)
            return _still_ours_to_finish(s, job, worker)
        if row.state != RUNNING:
            return False
        if row.attempts < MAX_ATTEMPTS:
            row.state, row.error = QUEUED, f"attempt {row.attempts} of {MAX_ATTEMPTS} failed: {reason}"
            return False
        row.state, row.finished_at, row.error = DONE, utcnow(), DEAD + reason
        log.error("dead-lettered scan task %s (blob %s of job %s): %s", row.id, row.blob_digest, job.id, reason)
        return _took_last(s, job, worker)


def _still_ours_to_finish(s: Session, job: ScanJob, worker: str) -> bool:
    """Whether the locked job, whose last task this worker completed in a commit it did not see succeed, is
    still this worker's to finalise (it holds the job and the job is not finished)."""
    return job.claimed_by == worker and _none_left(s, job)


def _took_last(s: Session, job: ScanJob, worker: str) -> bool:
    """Whether the job, still running, has no task left: then this worker finalises it, under a fresh lease."""
    if not _none_left(s, job):
        return False
    _renew_lease(job, worker)
    return True


def _none_left(s: Session, job: ScanJob) -> bool:
    """Whether the job is still running and every one of its tasks is done."""
    return job.state == RUNNING and not s.scalar(_TASKS_LEFT, {"job_id": job.id})


def _renew_lease(job: ScanJob, worker: str) -> None:
    """The worker that will finalise the job holds it under a fresh lease (another takes over if it dies)."""
    job.claimed_at, job.claimed_by = utcnow(), worker


def claim_job(ctx: RegistryContext, worker: str, lease_s: float) -> tuple[int, bool] | None:
    """Take the oldest queued job and expand it into tasks; ``(job id, True)`` when it has no blob to scan, so
    the caller finalises it at once."""
    expanded = _expand(ctx, worker, lease_s, take_first=False)
    return None if expanded is None else expanded[:2]


def _expand(
    ctx: RegistryContext, worker: str, lease_s: float, *, take_first: bool
) -> tuple[int, bool, ClaimedTask | None] | None:
    """:func:`claim_job`; with ``take_first`` this worker also claims the job's first task, as ``claim_task``
    would (it is the oldest task of a job no worker is scanning)."""
    with ctx.transaction() as s:
        job = s.scalar(_OLDEST_QUEUED_JOB)
        if job is None:
            return None
        job.state, job.claimed_at, job.claimed_by = RUNNING, utcnow(), worker
        job.attempts += 1
        if job.attempts > MAX_ATTEMPTS:
            _give_up(s, job, worker)
            return job.id, False, None
        digests, before = scan_plan(s, job.version_id, rescan=job.rescan)
        if job.attempts > 1:  # an earlier claim expanded it (tasks are only ever made here, with the claim)
            s.execute(delete(ScanTask).where(ScanTask.job_id == job.id))
        rows = [ScanTask(job_id=job.id, blob_digest=d, state=QUEUED, attempts=0, previous_verdict=before.get(d))
                for d in digests]
        s.add_all(rows)
        if not (take_first and rows):
            return job.id, not digests, None
        first = rows[0]
        first.state, first.claimed_at, first.claimed_by, first.attempts = RUNNING, utcnow(), worker, 1
        s.flush()  # its id
        return job.id, False, ClaimedTask(first.id, job.id, first.blob_digest, first.attempts)


def claim_unfinished(ctx: RegistryContext, worker: str, lease_s: float) -> tuple[int, bool] | None:
    """Take a running job whose tasks are all done but which nobody finished: its finaliser died (lease ran out)
    or failed. After ``MAX_ATTEMPTS`` claims the job is given up."""
    stale = utcnow() - timedelta(seconds=lease_s)
    open_tasks = select(ScanTask.id).where(ScanTask.job_id == ScanJob.id, ScanTask.state != DONE).exists()
    with ctx.transaction() as s:
        job = s.scalar(
            select(ScanJob)
            .where(ScanJob.state == RUNNING, or_(ScanJob.claimed_at.is_(None), ScanJob.claimed_at < stale),
                   ~open_tasks)
            .order_by(ScanJob.id).limit(1).with_for_update(skip_locked=True)
        )
        if job is None:
            return None
        job.claimed_at, job.claimed_by = utcnow(), worker
        job.attempts += 1
        if job.attempts > MAX_ATTEMPTS:
            _give_up(s, job, worker)
            return job.id, False
        return job.id, True


def _give_up(s: Session, job: ScanJob, worker: str) -> None:
    """Dead-letter a job: its version's scan status becomes error (never clean), with no automatic retry."""
    job.state, job.finished_at = DONE, utcnow()
    job.error = f"{GAVE_UP} {MAX_ATTEMPTS} attempts"
    version = s.get(Version, job.version_id)
    assert version is not None
    version.scan_status = Verdict.ERROR.value
    version.scanner_version = SCANNER_VERSION  # tried with this scanner: no automatic retry loop
    record_version_event(s, version, action="scan.failed", actor=f"scan-worker {worker}",
                         details={"error": job.error})


def finalise(ctx: RegistryContext, job_id: int, worker: str) -> None:
    """Run the contamination step and record the verdict; a failure leaves the job to the next worker."""
    try:
        with ctx.transaction() as s:
            job = s.get(ScanJob, job_id)
            assert job is not None
            version_id = job.version_id
            failed, previous = _outcome(_tasks_of(s, job_id))
            kind = _kind(s, version_id)
        # Datasets only: fingerprint match and index (synthetic.contamination). A failed scan ends as error anyway.
        contamination = None if failed or kind != "dataset" else _contamination(ctx, version_id)
        with ctx.transaction() as s:
            job = _lock_job(s, job_id)
            if job is None or job.state != RUNNING:
                log.info("scan job %s was finished by another worker meanwhile", job_id)
                return
            _finish(s, job, worker, contamination, failed, previous)
    except Exception:
        log.exception("finishing scan job %s failed; it will be retried", job_id)
        try:
            _release_job(ctx, job_id, worker)
        except Exception as exc:
            raise NotHandedBack(type(exc).__name__, job_id=job_id) from exc


def _release_job(ctx: RegistryContext, job_id: int, worker: str) -> None:
    """A job whose finish failed goes to the next worker at once (its lease cleared), if this one still holds it."""
    with ctx.transaction() as s:
        job = _lock_job(s, job_id)
        if job is not None and job.state == RUNNING and job.claimed_by == worker:
            job.claimed_at, job.error = None, FINISH_FAILED


def _contamination(ctx: RegistryContext, version_id: int) -> Verdict | None:
    """The contamination step of a dataset. The analysis brings numpy, scipy and datasketch (0.6 s of CPU),
    imported the first time a dataset needs it: a worker that only ever sees models never pays it."""
    from registry.synthetic.contamination import analyse

    return analyse(ctx, version_id)
