"""Scan work shared per blob: several workers split one version, leases are taken over, a job is finished
exactly once, and a blob that keeps failing is dead-lettered (the job ends as error), on both databases.

Workers are real: each has its own engine (as separate processes would) and scans in the sandbox child.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select, update
from sqlalchemy.exc import OperationalError

from registry.artifacts.holdings import record_holding
from registry.artifacts.models import Version
from registry.artifacts.versions import get_or_create_artifact, open_version, record_blob
from registry.audit.models import AuditEntry
from registry.core.context import RegistryContext
from registry.core.db import make_engine, make_session_factory
from registry.core.settings import Settings
from registry.core.tables import utcnow
from registry.lineage import quarantine
from registry.push.commit import commit_version
from registry.scanning import tasks
from registry.scanning.models import ScanJob, ScanTask
from registry.scanning.queue import enqueue
from registry.scanning.results import GAVE_UP, MAX_ATTEMPTS, results_for
from registry.scanning.worker import ScanLoop
from registry.web.metrics import RegistryStateCollector
from signing.manifest import FileEntry, Manifest
from tests.support.gate import MALICIOUS_PICKLE
from tests.support.service import Reg

LEASE_S = 60.0


@pytest.fixture
def ctx(reg: Reg, db_url: str, tmp_path: Path) -> Iterator[RegistryContext]:
    context = _context(reg, db_url, tmp_path)
    yield context
    context.engine.dispose()


def _context(reg: Reg, db_url: str, tmp_path: Path) -> RegistryContext:
    """A worker's own context on the shared database and blob store."""
    settings = Settings(data_dir=tmp_path, database_url=db_url, scan_lease_s=LEASE_S, scan_timeout_s=120)
    engine = make_engine(db_url)
    return RegistryContext(settings=settings, engine=engine, sessions=make_session_factory(engine), blobs=reg.blobs)


@pytest.fixture
def other(reg: Reg, db_url: str, tmp_path: Path) -> Iterator[RegistryContext]:
    """A second worker, with its own engine."""
    context = _context(reg, db_url, tmp_path)
    yield context
    context.engine.dispose()


def _commit(reg: Reg, name: str, files: dict[str, bytes], kind: str = "model") -> int:
    entries = []
    for path, data in files.items():
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        writer = reg.blobs.writer(digest, len(data))
        writer.write(data)
        writer.commit()
        entries.append(FileEntry(path, len(data), digest))
    manifest = Manifest.from_entries(entries)
    with reg.session() as s:
        for entry in manifest.files:
            record_blob(s, entry.digest, entry.size)
        record_holding(s, "acme", [entry.digest for entry in manifest.files])
        art = get_or_create_artifact(s, "acme", name, kind, "tester")
        version, _ = open_version(s, reg.blobs, art, "1", manifest, actor="tester")
        commit_version(s, reg.blobs, version, actor="tester")
        return version.id


def _drain(ctx: RegistryContext, worker: str) -> None:
    while tasks.run_once(ctx, worker):
        pass


def _state(reg: Reg, version_id: int) -> tuple[str | None, dict[str, str]]:
    with reg.session() as s:
        version = s.get(Version, version_id)
        assert version is not None
        results = results_for(s, version_id)
        return version.scan_status, {f.path: results[f.digest].verdict for f in version.files if f.digest in results}


def _audited(reg: Reg, action: str, name: str) -> int:
    with reg.session() as s:
        return s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == action, AuditEntry.name == name)) or 0


def _gauges(ctx: RegistryContext) -> dict[tuple[str, tuple[str, ...]], float]:
    return {(sample.name, tuple(sample.labels.values())): sample.value
            for family in RegistryStateCollector(ctx).collect() for sample in family.samples}


def test_two_workers_share_a_version_and_reach_the_one_worker_verdict(
        reg: Reg, ctx: RegistryContext, other: RegistryContext) -> None:
    files = {f"shard-{i}.pkl": pickle.dumps({"layer": i, "weights": list(range(50))}) for i in range(3)}
    files["extra.pkl"] = MALICIOUS_PICKLE
    version_id = _commit(reg, "big", files)
    _drain(ctx, "solo")
    alone = _state(reg, version_id)
    assert alone[0] == "malicious" and alone[1]["extra.pkl"] == "malicious" and len(alone[1]) == 4

    with reg.session() as s:  # a rescan re-runs every blob, shared by two workers started before it is queued
        version = s.get(Version, version_id)
        assert version is not None
        job_id = enqueue(s, version, rescan=True).id
    expanded = tasks.claim_job(ctx, "w1", LEASE_S)
    assert expanded == (job_id, False)
    # Each worker holds a blob of the same version at once (a scan now takes milliseconds, so free-running
    # workers could let one of them take every blob before the other asks).
    held = {name: tasks.claim_task(context, name, LEASE_S) for context, name in ((ctx, "w1"), (other, "w2"))}
    first, second = held["w1"], held["w2"]
    assert first is not None and second is not None
    assert first.job_id == second.job_id == job_id and first.digest != second.digest
    stop = threading.Event()

    def work(context: RegistryContext, name: str) -> None:
        task = held[name]
        assert task is not None
        if tasks.run_task(context, task, name):
            tasks.finalise(context, task.job_id, name)
        while not stop.is_set():
            if not tasks.run_once(context, name):
                time.sleep(0.02)

    threads = [threading.Thread(target=work, args=(c, n)) for c, n in ((ctx, "w1"), (other, "w2"))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            with reg.session() as s:
                if s.scalar(select(ScanJob.state).where(ScanJob.id == job_id)) == "done":
                    break
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    with reg.session() as s:
        done = list(s.scalars(select(ScanTask).where(ScanTask.job_id == job_id)))
        version = s.get(Version, version_id)
        assert version is not None and quarantine.active_quarantine(s, version) is not None
    assert len(done) == 4 and {t.state for t in done} == {"done"}
    assert {t.claimed_by for t in done} == {"w1", "w2"}  # each worker scanned some blobs
    assert _state(reg, version_id) == alone
    assert _audited(reg, "scan.completed", "big") == 2  # the commit's scan and the rescan, each once


def test_a_dead_workers_task_and_finalisation_are_taken_over_once(reg: Reg, ctx: RegistryContext) -> None:
    version_id = _commit(reg, "lease", {f"f{i}.json": json.dumps({"i": i}).encode() for i in range(3)})
    claimed = tasks.claim_job(ctx, "dead", LEASE_S)
    assert claimed is not None and claimed[1] is False
    job_id = claimed[0]
    held = tasks.claim_task(ctx, "dead", LEASE_S)  # ... and the worker dies holding this task
    assert held is not None
    gauges = _gauges(ctx)
    assert gauges[("mir_scan_tasks", ("running",))] == 1 and gauges[("mir_scan_tasks", ("queued",))] == 2
    assert gauges[("mir_scan_tasks_lease_expired", ())] == 0

    _drain(ctx, "live")  # the other blobs; the held one waits for its lease
    assert _state(reg, version_id)[0] == "pending"
    with reg.session() as s:
        s.execute(update(ScanTask).where(ScanTask.id == held.id).values(
            claimed_at=utcnow() - timedelta(seconds=LEASE_S + 1)))
    assert _gauges(ctx)[("mir_scan_tasks_lease_expired", ())] == 1
    _drain(ctx, "live")
    with reg.session() as s:
        task = s.get(ScanTask, held.id)
        assert task is not None and (task.state, task.claimed_by, task.attempts) == ("done", "live", 2)
    assert _state(reg, version_id)[0] == "clean"
    # The dead worker comes back late: its result is dropped and nothing is finished twice.
    assert tasks.run_task(ctx, held, "dead") is False
    tasks.finalise(ctx, job_id, "dead")
    assert _audited(reg, "scan.completed", "lease") == 1

    # A finaliser that dies after the last task: the job waits for its lease, then another worker finishes it.
    # (A dataset: its contamination step runs outside the transaction that stores the last result.)
    second = _commit(reg, "orphan", {"a.jsonl": b'{"text": "first row"}\n', "b.jsonl": b'{"text": "second"}\n'},
                     kind="dataset")
    claimed = tasks.claim_job(ctx, "dying", LEASE_S)
    assert claimed is not None
    last = [tasks.run_task(ctx, t, "dying") for t in iter(lambda: tasks.claim_task(ctx, "dying", LEASE_S), None)]
    assert last == [False, True]  # it completed the last task, so it alone would finish the job ... and dies
    assert tasks.run_once(ctx, "live") is False
    with reg.session() as s:
        s.execute(update(ScanJob).where(ScanJob.id == claimed[0]).values(
            claimed_at=utcnow() - timedelta(seconds=LEASE_S + 1)))
    assert tasks.run_once(ctx, "live") is True
    # Finished once, by the live worker. (Its verdict is error: records this short cannot be fingerprinted, and a
    # contamination step that assessed nothing fails closed.)
    assert _state(reg, second)[0] not in ("pending", None) and _audited(reg, "scan.completed", "orphan") == 1
    with reg.session() as s:
        job = s.scalar(select(ScanJob).where(ScanJob.id == claimed[0]))
        assert job is not None and (job.state, job.claimed_by) == ("done", "live")


def test_a_blob_that_keeps_failing_is_dead_lettered_and_the_job_ends_as_error(reg: Reg, ctx: RegistryContext) -> None:
    version_id = _commit(reg, "broken", {"config.json": b'{"ok": true}', "model.bin": b"weights that vanish"})
    reg.blobs.path_for("sha256:" + hashlib.sha256(b"weights that vanish").hexdigest()).unlink()
    _drain(ctx, "w")
    with reg.session() as s:
        failed = s.scalar(select(ScanTask).where(ScanTask.error.is_not(None)))
        job = s.scalar(select(ScanJob).where(ScanJob.version_id == version_id))
    assert failed is not None and failed.state == "done" and failed.attempts == MAX_ATTEMPTS
    assert failed.error is not None and failed.error.startswith(GAVE_UP) and "FileNotFoundError" in failed.error
    assert job is not None and job.state == "done" and job.error is not None
    assert job.error.startswith(f"{GAVE_UP} {MAX_ATTEMPTS} attempts on model.bin: FileNotFoundError")
    assert _state(reg, version_id) == ("error", {"config.json": "clean"})
    assert _audited(reg, "scan.failed", "broken") == 1 and _audited(reg, "scan.completed", "broken") == 0
    assert _gauges(ctx)[("mir_scan_tasks_dead_lettered", ())] == 1


def test_a_models_last_result_finishes_its_job_in_the_same_transaction(reg: Reg, ctx: RegistryContext) -> None:
    version_id = _commit(reg, "quick", {"a.json": b'{"a": 1}', "b.json": b'{"b": 2}'})
    transactions: list[list[str]] = [[]]
    event.listen(ctx.engine, "before_cursor_execute", lambda _c, _k, sql, *_a: transactions[-1].append(sql.upper()))
    event.listen(ctx.engine, "commit", lambda _conn: transactions.append([]))

    def scan_work() -> int:
        """Transactions since the last call that touched a scan job, task or result (the audit log's sequencer
        integrates the finish's entry in a transaction of its own)."""
        done = [t for t in transactions[:-1] if any("SCAN_" in sql for sql in t)]
        del transactions[:-1]
        return len(done)

    assert tasks.run_once(ctx, "w") is True  # expands the job and takes its first blob in one claim, then scans it
    assert scan_work() == 2
    task = tasks.claim_task(ctx, "w", LEASE_S)
    assert task is not None and scan_work() == 1
    assert tasks.run_task(ctx, task, "w") is False  # nothing left for finalise
    assert scan_work() == 1  # the last result, the verdict and the audit entry
    assert _state(reg, version_id)[0] == "clean" and _audited(reg, "scan.completed", "quick") == 1
    assert tasks.run_once(ctx, "w") is False


def test_a_finish_that_fails_with_the_last_result_still_stores_it_and_finishes_apart(
        reg: Reg, ctx: RegistryContext) -> None:
    """The database refuses the finishing transaction once (its audit entry's insert): the result is stored
    in a transaction of its own and the job is finished by ``finalise``, once."""
    version_id = _commit(reg, "refused", {"only.json": b'{"only": 1}'})
    refused: list[str] = []

    def refuse_once(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not refused and statement.lstrip().upper().startswith("INSERT INTO AUDIT_QUEUE"):
            refused.append(statement)
            raise OperationalError(statement, {}, RuntimeError("refused by the test"))

    event.listen(ctx.engine, "before_cursor_execute", refuse_once)
    try:
        assert tasks.run_once(ctx, "w") is True
    finally:
        event.remove(ctx.engine, "before_cursor_execute", refuse_once)
    assert refused, "the finishing transaction wrote no audit entry"
    assert _state(reg, version_id) == ("clean", {"only.json": "clean"})
    assert _audited(reg, "scan.completed", "refused") == 1
    with reg.session() as s:
        job = s.scalar(select(ScanJob).where(ScanJob.version_id == version_id))
        assert job is not None and job.state == "done" and job.error is None


def test_a_one_file_version_is_scanned_without_the_statements_it_no_longer_needs(
        reg: Reg, ctx: RegistryContext) -> None:
    """Pins what the worker stopped asking (each a round trip, and CPU in SQLAlchemy): a first expansion deletes
    no tasks (none can exist before a job's first claim), reads the blobs' results once for both what to scan and
    their earlier verdicts, and the finish reads the version with its artifact once, its files once, and no lease
    renewal that the finish itself overwrites."""
    version_id = _commit(reg, "lean", {"only.json": b'{"only": 1}'})
    sql: list[str] = []
    event.listen(ctx.engine, "before_cursor_execute", lambda _c, _k, statement, *_a: sql.append(
        " ".join(statement.split()).upper()))
    assert tasks.run_once(ctx, "w") is True
    assert _state(reg, version_id) == ("clean", {"only.json": "clean"})

    def count(start: str, table: str) -> int:
        return sum(1 for s in sql if s.startswith(start) and f" {table.upper()}" in s)

    assert count("DELETE", "scan_tasks") == 0
    assert count("SELECT SCAN_RESULTS.BLOB_DIGEST, SCAN_RESULTS.VERDICT", "scan_results") == 1
    assert count("SELECT", "artifacts") == 1 and count("SELECT VERSIONS.", "versions") == 1
    assert count("SELECT VERSION_FILES.DIGEST", "version_files") == 1  # the expansion's; the finish reads rows
    assert count("SELECT VERSION_FILES.VERSION_ID", "version_files") == 1
    assert count("UPDATE SCAN_JOBS", "scan_jobs") == 2  # the claim, then the finish (no lease renewal between)


def test_the_job_row_names_the_worker_that_finished_it(reg: Reg, ctx: RegistryContext) -> None:
    """A job expanded by one worker (which then died) and finished by another with its last result: the row
    says who finished it, as it did when the finish renewed the lease first."""
    version_id = _commit(reg, "taken", {"only.json": b'{"only": 1}'})
    assert tasks.claim_job(ctx, "dead", LEASE_S) is not None  # expands, then dies before taking any task
    _drain(ctx, "live")
    with reg.session() as s:
        job = s.scalar(select(ScanJob).where(ScanJob.version_id == version_id))
        assert job is not None and job.state == "done" and job.claimed_by == "live"


class _Outage:
    """The database refusing statements for a while, as during a restart: every statement from the first one
    that starts with ``starts`` on, until ``end``."""

    def __init__(self, ctx: RegistryContext, starts: str) -> None:
        self.ctx, self.starts, self.down, self.refused = ctx, starts.upper(), False, 0
        event.listen(ctx.engine, "before_cursor_execute", self)

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not self.down and statement.lstrip().upper().startswith(self.starts):
            self.down = True
        if self.down:
            self.refused += 1
            raise OperationalError(statement, {}, RuntimeError("the database is restarting (test)"))

    def end(self) -> None:
        event.remove(self.ctx.engine, "before_cursor_execute", self)


def _task_row(reg: Reg, version_id: int) -> ScanTask:
    with reg.session() as s:
        row = s.scalar(select(ScanTask).join(ScanJob, ScanJob.id == ScanTask.job_id)
                       .where(ScanJob.version_id == version_id))
        assert row is not None
        return row


def test_a_failed_scan_the_database_would_not_take_back_is_handed_back_once_it_answers(
        reg: Reg, ctx: RegistryContext, other: RegistryContext) -> None:
    """The scan fails and so does the database, as the worker puts the task back: the worker keeps it and hands
    it back on a later loop, so another worker takes it at once instead of after the lease (an hour)."""
    version_id = _commit(reg, "outage", {"model.bin": b"weights that vanish"})
    reg.blobs.path_for("sha256:" + hashlib.sha256(b"weights that vanish").hexdigest()).unlink()
    outage = _Outage(ctx, "UPDATE scan_tasks")
    with pytest.raises(tasks.NotHandedBack) as raised:
        tasks.run_once(ctx, "w")
    assert outage.refused and raised.value.task is not None and raised.value.reason == "FileNotFoundError"
    assert _task_row(reg, version_id).state == "running"
    assert tasks.run_once(other, "o") is False  # held by "w" until its lease runs out
    assert tasks.hand_back(ctx, [raised.value], "w") == [raised.value]  # the database still refuses
    outage.end()
    assert tasks.hand_back(ctx, [raised.value], "w") == []
    row = _task_row(reg, version_id)
    assert (row.state, row.attempts, row.error) == ("queued", 1, "attempt 1 of 3 failed: FileNotFoundError")
    _drain(other, "o")
    row = _task_row(reg, version_id)
    assert (row.state, row.claimed_by, row.attempts) == ("done", "o", MAX_ATTEMPTS)
    assert _state(reg, version_id)[0] == "error"


def test_a_result_the_database_would_not_store_sends_its_task_back_to_be_scanned_again(
        reg: Reg, ctx: RegistryContext) -> None:
    version_id = _commit(reg, "unstored", {"only.json": b'{"only": 1}'})
    outage = _Outage(ctx, "INSERT INTO scan_results")
    with pytest.raises(tasks.NotHandedBack) as raised:
        tasks.run_once(ctx, "w")
    assert raised.value.reason == "result not stored: OperationalError"
    outage.end()
    assert tasks.hand_back(ctx, [raised.value], "w") == []
    assert _task_row(reg, version_id).state == "queued"
    _drain(ctx, "w")
    assert _state(reg, version_id) == ("clean", {"only.json": "clean"})
    assert _audited(reg, "scan.completed", "unstored") == 1


def test_a_finish_the_database_would_not_release_is_released_once_it_answers(
        reg: Reg, ctx: RegistryContext, other: RegistryContext) -> None:
    """The finish fails (its audit entry is refused, with the last result and again apart) and the database
    goes on refusing as the worker releases the job: the worker releases it later, and another finishes it."""
    version_id = _commit(reg, "unreleased", {"only.json": b'{"only": 1}'})
    audits: list[str] = []

    def refuse(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO AUDIT_QUEUE"):
            audits.append(statement)
        if audits and (audits[-1] is statement or len(audits) >= 2):  # down from finalise's finish on
            raise OperationalError(statement, {}, RuntimeError("the database is restarting (test)"))

    event.listen(ctx.engine, "before_cursor_execute", refuse)
    try:
        with pytest.raises(tasks.NotHandedBack) as raised:
            tasks.run_once(ctx, "w")
        assert raised.value.job_id is not None and raised.value.task is None
        assert len(audits) == 2  # the finish with the last result, then finalise's
        assert tasks.run_once(other, "o") is False  # still held by "w"
        assert tasks.hand_back(ctx, [raised.value], "w") == [raised.value]
    finally:
        event.remove(ctx.engine, "before_cursor_execute", refuse)
    assert tasks.hand_back(ctx, [raised.value], "w") == []
    assert tasks.run_once(other, "o") is True
    assert _state(reg, version_id) == ("clean", {"only.json": "clean"})
    assert _audited(reg, "scan.completed", "unreleased") == 1
    with reg.session() as s:
        job = s.scalar(select(ScanJob).where(ScanJob.version_id == version_id))
        assert job is not None and (job.state, job.claimed_by, job.error) == ("done", "o", None)


def test_a_last_attempt_handed_back_whose_job_cannot_be_released_keeps_the_job(
        reg: Reg, ctx: RegistryContext, other: RegistryContext) -> None:
    """Handing back a task on its last attempt dead-letters it and completes the job; when the database then
    refuses the finish and the release too, the worker keeps the job (not the task, which is back) and
    releases it later."""
    version_id = _commit(reg, "last", {"model.bin": b"weights that vanish too"})
    reg.blobs.path_for("sha256:" + hashlib.sha256(b"weights that vanish too").hexdigest()).unlink()
    outage = _Outage(ctx, "UPDATE scan_tasks")
    with pytest.raises(tasks.NotHandedBack) as raised:
        tasks.run_once(ctx, "w")
    outage.end()
    with reg.session() as s:
        s.execute(update(ScanTask).values(attempts=MAX_ATTEMPTS))
    outage = _Outage(ctx, "INSERT INTO audit_queue")
    left = tasks.hand_back(ctx, [raised.value], "w")
    outage.end()
    assert [(item.task, item.job_id is not None) for item in left] == [(None, True)]
    assert _task_row(reg, version_id).state == "done"
    assert tasks.run_once(other, "o") is False  # the job is still held by "w"
    assert tasks.hand_back(ctx, left, "w") == []
    assert tasks.run_once(other, "o") is True
    assert _state(reg, version_id)[0] == "error"
    assert _audited(reg, "scan.failed", "last") == 1


class _LostReply:
    """The COMMIT reaches the database and succeeds, but the worker sees an error (the reply was lost): armed,
    the next commit of this context's sessions raises once it is done."""

    def __init__(self, ctx: RegistryContext) -> None:
        self.ctx, self.armed, self.fired = ctx, True, 0
        event.listen(ctx.sessions, "after_commit", self)

    def __call__(self, _session: Any) -> None:
        if self.armed:
            self.armed, self.fired = False, self.fired + 1
            raise ConnectionResetError("the reply to COMMIT was lost (test)")

    def end(self) -> None:
        event.remove(self.ctx.sessions, "after_commit", self)


def test_a_dead_letter_that_committed_unseen_is_finished_by_its_worker_when_handed_back(
        reg: Reg, ctx: RegistryContext, other: RegistryContext) -> None:
    """The last attempt's dead letter commits (and with it the job's lease, renewed to this worker) but the
    worker sees an error: handing it back finds the task done by this worker and finishes the job, instead of
    dropping it and leaving the job claimed for the lease."""
    version_id = _commit(reg, "unseen", {"model.bin": b"bytes that are gone"})
    reg.blobs.path_for("sha256:" + hashlib.sha256(b"bytes that are gone").hexdigest()).unlink()
    assert tasks.claim_job(ctx, "w", LEASE_S) is not None
    with reg.session() as s:
        s.execute(update(ScanTask).values(attempts=MAX_ATTEMPTS - 1))
    held = tasks.claim_task(ctx, "w", LEASE_S)
    assert held is not None and held.attempts == MAX_ATTEMPTS
    lost = _LostReply(ctx)
    try:
        with pytest.raises(tasks.NotHandedBack) as raised:
            tasks.run_task(ctx, held, "w")
    finally:
        lost.end()
    assert lost.fired == 1 and _task_row(reg, version_id).state == "done"  # the dead letter did commit
    assert tasks.hand_back(ctx, [raised.value], "w") == []
    assert _state(reg, version_id)[0] == "error" and _audited(reg, "scan.failed", "unseen") == 1
    assert tasks.run_once(other, "o") is False


def test_a_datasets_last_result_that_committed_unseen_is_still_finalised(reg: Reg, ctx: RegistryContext) -> None:
    """A dataset's last result commits (its contamination step runs after) but the worker sees an error: the
    retry finds its own result and leaves the job to finalise, once, instead of to the lease."""
    version_id = _commit(reg, "data", {"a.jsonl": b'{"text": "first row"}\n'}, kind="dataset")
    assert tasks.claim_job(ctx, "w", LEASE_S) is not None
    held = tasks.claim_task(ctx, "w", LEASE_S)
    assert held is not None
    lost = _LostReply(ctx)
    try:
        assert tasks.run_task(ctx, held, "w") is True  # for finalise, as when nothing went wrong
    finally:
        lost.end()
    assert lost.fired == 1
    tasks.finalise(ctx, held.job_id, "w")
    assert _state(reg, version_id)[0] not in ("pending", None)
    assert _audited(reg, "scan.completed", "data") + _audited(reg, "scan.failed", "data") == 1


def test_the_worker_loop_hands_back_what_it_owes_when_it_ends(reg: Reg, ctx: RegistryContext) -> None:
    """`mir worker` keeps what the database would not take back and hands it back on its next step or, at the
    latest, when it stops (a --once run included): not left to the lease."""
    version_id = _commit(reg, "looped", {"model.bin": b"weights that vanish in the loop"})
    reg.blobs.path_for("sha256:" + hashlib.sha256(b"weights that vanish in the loop").hexdigest()).unlink()
    loop = ScanLoop(ctx, "w")
    outage = _Outage(ctx, "UPDATE scan_tasks")
    assert loop.step() is True  # claimed and scanned: work was done, and some is owed
    assert len(loop.owed) == 1 and _task_row(reg, version_id).state == "running"
    loop.close()  # the database still refuses: left to the lease, said in the log
    assert len(loop.owed) == 1
    outage.end()
    loop.close()
    assert loop.owed == []
    row = _task_row(reg, version_id)
    assert (row.state, row.attempts) == ("queued", 1)
