"""Finishing a scan job: a file without a stored result is an error, never clean (and never a crash)."""

from __future__ import annotations

import hashlib

from sqlalchemy import insert, select

from registry.artifacts.holdings import record_holding
from registry.artifacts.models import Version, VersionFile
from registry.artifacts.versions import get_or_create_artifact, open_version, record_blob
from registry.audit.models import AuditEntry
from registry.core.tables import utcnow
from registry.push.commit import commit_version
from registry.scanning import results as scans
from registry.scanning.models import ScanJob, ScanResult
from registry.scanning.queue import DONE, QUEUED
from signing.manifest import FileEntry, Manifest
from tests.support.service import Reg


def _store(reg: Reg, data: bytes) -> FileEntry:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    writer = reg.blobs.writer(digest, len(data))
    writer.write(data)
    writer.commit()
    return FileEntry("", len(data), digest)


def test_missing_result_makes_the_version_error(reg: Reg) -> None:
    scanned, unscanned = _store(reg, b"config"), _store(reg, b"weights")
    manifest = Manifest.from_entries([
        FileEntry("config.json", scanned.size, scanned.digest),
        FileEntry("model.bin", unscanned.size, unscanned.digest),
    ])
    with reg.session() as s:
        for entry in manifest.files:
            record_blob(s, entry.digest, entry.size)
        record_holding(s, "acme", [entry.digest for entry in manifest.files])
        art = get_or_create_artifact(s, "acme", "partly", "model", "tester")
        version, _ = open_version(s, reg.blobs, art, "1", manifest, actor="tester")
        commit_version(s, reg.blobs, version, actor="tester")
        s.add(ScanResult(blob_digest=scanned.digest, scanner=scans.SCANNER_NAME,
                         scanner_version=scans.SCANNER_VERSION, verdict="clean", format="text", findings=[]))
        job = s.scalar(select(ScanJob).where(ScanJob.version_id == version.id))
        assert job is not None
        scans.finish_job(s, job, "tester")
    with reg.session() as s:
        row = s.scalar(select(Version).where(Version.version == "1"))
        assert row is not None and row.scan_status == "error"
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "scan.completed"))
        assert entry is not None and '"flagged_files":{"model.bin":"error"}' in entry.body


def _unlisted(name: str) -> dict[str, object]:
    return {"severity": "suspicious", "message": f"global {name}", "member": None, "offset": 0, "symbol": name,
            "rule": "unlisted-global"}


def test_a_policy_sees_unlisted_globals_only_when_nothing_else_was_found(reg: Reg) -> None:
    few = "sha256:" + "1" * 64
    many = "sha256:" + "2" * 64
    mixed = "sha256:" + "3" * 64
    with reg.session() as s:
        scans.store_result(s, few, {"verdict": "suspicious", "format": "pickle",
                                     "findings": [_unlisted("b.B"), _unlisted("a.A"), _unlisted("a.A")]})
        # More findings than are stored: the ones not kept could be anything, so nothing may be lifted.
        scans.store_result(s, many, {"verdict": "suspicious", "format": "pickle",
                                      "findings": [_unlisted(f"m{i}.C") for i in range(250)]})
        scans.store_result(s, mixed, {"verdict": "suspicious", "format": "pickle", "findings": [
            _unlisted("a.A"), {**_unlisted("x.Y"), "rule": None, "message": "calls a computed callable"}]})
    with reg.session() as s:
        rows = {r.blob_digest: r for r in s.scalars(select(ScanResult))}
        assert scans.unlisted_globals(rows[few]) == ["a.A", "b.B"]
        assert len(rows[many].findings) == scans.MAX_STORED_FINDINGS
        assert rows[many].findings[-1]["rule"] is None and "51 more findings" in rows[many].findings[-1]["message"]
        assert scans.unlisted_globals(rows[many]) == []
        assert scans.unlisted_globals(rows[mixed]) == []


def test_result_lookups_take_more_digests_than_one_statement_may_bind(reg: Reg) -> None:
    """A version may hold up to 100,000 files; its digests are looked up in slices (PostgreSQL binds at most
    65,535 parameters per statement, SQLite 32,766), not in one IN list that fails past that."""
    digests = [f"sha256:{i:064x}" for i in range(70_000)]
    first, last = digests[0], digests[-1]
    with reg.session() as s:
        for digest, verdict in ((first, "clean"), (last, "suspicious"), (last, "malicious")):
            s.add(ScanResult(blob_digest=digest, scanner=scans.SCANNER_NAME, scanner_version=scans.SCANNER_VERSION,
                             verdict=verdict, format="pickle", findings=[]))
    with reg.session() as s:
        assert scans.latest_verdicts(s, digests) == {first: "clean", last: "malicious"}
        assert {d: r.verdict for d, r in scans.latest_results(s, digests).items()} == \
            {first: "clean", last: "malicious"}


def test_a_version_with_more_files_than_one_statement_may_bind_shows_and_refreshes_its_verdicts(reg: Reg) -> None:
    """The scan summary of a version of 70,000 files, and the refresh of versions sharing its blobs after a
    rescan, read results in slices too."""
    shared = _store(reg, b"shared weights")
    manifest = Manifest.from_entries([FileEntry("model.bin", shared.size, shared.digest)])
    with reg.session() as s:
        record_blob(s, shared.digest, shared.size)
        record_holding(s, "acme", [shared.digest])
        art = get_or_create_artifact(s, "acme", "huge", "model", "tester")
        huge, _ = open_version(s, reg.blobs, art, "1", manifest, actor="tester")
        other, _ = open_version(s, reg.blobs, art, "2", manifest, actor="tester")
        for version in (huge, other):
            commit_version(s, reg.blobs, version, actor="tester")
        s.flush()
        more = [f"sha256:{i:064x}" for i in range(70_000)]
        s.execute(insert(VersionFile), [{"version_id": huge.id, "path": f"shard-{i:05d}.bin", "size": 1,
                                         "digest": digest} for i, digest in enumerate(more)])
        for digest in (more[-1], shared.digest):
            s.add(ScanResult(blob_digest=digest, scanner=scans.SCANNER_NAME, scanner_version=scans.SCANNER_VERSION,
                             verdict="clean", format="pickle", findings=[]))
        s.flush()
        for job in s.scalars(select(ScanJob)):
            job.state, job.finished_at = DONE, utcnow()
        huge_id, other_id = huge.id, other.id
    with reg.session() as s:
        version = s.get(Version, huge_id)
        assert version is not None
        summary = scans.version_scan_summary(s, version)
        by_path = {f["path"]: f["verdict"] for f in summary["files"]}
        assert len(by_path) == 70_001
        assert by_path["shard-69999.bin"] == by_path["model.bin"] == "clean" and by_path["shard-00000.bin"] is None
        scans.refresh_sharers(s, huge_id, {*more, shared.digest})
    with reg.session() as s:
        queued = s.scalars(select(ScanJob.version_id).where(ScanJob.state == QUEUED)).all()
        assert queued == [other_id]
