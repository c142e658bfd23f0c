"""A hostile tenant (an ordinary ``write:`` token) against the S3 blob store, presigned downloads and per-blob
scan tasks. Each test is the regression test of one hole; the store is moto's real S3 HTTP server, on both
databases.

- Whether a digest exists in another namespace showed in the time of an answer: every "what must I send"
  question (``POST .../versions`` on /v1, the Git-LFS batch and verify calls of the Hub API, ``PUT .../blobs``)
  asked the store about every digest with a blob row, held by anyone, before looking at who holds it. On S3
  that is one ``HEAD`` per such digest, milliseconds each: an LFS batch of a victim's digest answered about
  15 ms slower than one of a random digest (median of 60 probes each against moto on loopback; tens of ms on
  real S3). The store is now asked only about blobs the caller may count. The Hub API commit's inline files
  likewise skipped the write when any namespace had stored the same bytes (``HEAD`` only, or ``HEAD`` plus
  ``PUT``): they are now always written.
- A scan task that failed recorded the exception's text, which reached the job's error and its ``scan.failed``
  audit entry that the namespace's readers read: the bucket's key layout (``FileNotFoundError:
  blobs/sha256/...``), or the store's endpoint URL from botocore's connection errors. Only the kind of failure
  is recorded now; the worker's log keeps the text.
- Scan workers took a queued blob task before expanding a queued job, oldest task first: one tenant's version
  of many blobs held every worker, and a version another tenant committed a second later was not even
  expanded until the last of those blobs was claimed (before per-blob tasks it waited for one free worker).
  New jobs are now expanded first, and a worker prefers a task of a version no worker is scanning.
- ``mir fsck`` took a store that refused or dropped a request for a missing blob: during an outage it marked
  every blob it read (``the stored file cannot be read: None``), and every tenant's downloads of them were
  refused until the next fsck. It now stops with exit status 2 and marks nothing for the store's failure.
- ``MIR_PRESIGNED_URL_TTL_S`` took any integer: on a store that does not cap it (moto serves a SigV4 URL signed
  for 10**9 s, and one already expired) a URL outlives every revocation and quarantine. It is now 1 s to 1 hour.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from registry.artifacts import fsck
from registry.artifacts import integrity as blob_integrity
from registry.artifacts.holdings import held_by, missing_for_push, record_holding
from registry.artifacts.models import Version
from registry.artifacts.versions import get_or_create_artifact, open_version, record_blob
from registry.audit.models import AuditEntry
from registry.core.blobstore import BlobStoreUnavailable
from registry.core.context import RegistryContext
from registry.core.db import make_engine, make_session_factory
from registry.core.s3_blobstore import S3BlobStore
from registry.core.settings import Settings
from registry.hf.commits import Operation, store_inline
from registry.push.commit import commit_version
from registry.scanning import tasks
from registry.scanning.models import ScanJob, ScanTask
from registry.server.migrate import ensure_schema
from signing.manifest import FileEntry, Manifest
from tests.support.s3 import S3Endpoint, s3_server


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Endpoint]:
    with s3_server() as endpoint:
        yield endpoint


class CountingStore:
    """The S3 store, with every request it sends to the server counted by operation and key (botocore's own
    event hooks; the requests still go to the real server)."""

    def __init__(self, endpoint: S3Endpoint) -> None:
        bucket = f"atkd-{secrets.token_hex(4)}"
        self.store = S3BlobStore.from_url(f"s3://{bucket}/blobs", endpoint_url=endpoint.url)
        self.store.client.create_bucket(Bucket=bucket)
        self.calls: list[tuple[str, str]] = []
        self.store.client.meta.events.register("provide-client-params.s3", self._seen)

    def _seen(self, params: dict[str, Any], model: Any, **_kwargs: Any) -> None:
        self.calls.append((model.name, str(params.get("Key", ""))))

    def asked_about(self, digest: str) -> list[str]:
        key = self.store.key_for(digest)
        return [op for op, asked in self.calls if asked == key]


@pytest.fixture
def ctx(db_url: str, s3: S3Endpoint, tmp_path: Path) -> Iterator[tuple[RegistryContext, CountingStore]]:
    counting = CountingStore(s3)
    engine = make_engine(db_url)
    ensure_schema(engine, db_url, auto_migrate=True)
    settings = Settings(data_dir=tmp_path, database_url=db_url, scan_timeout_s=120)
    yield (RegistryContext(settings=settings, engine=engine, sessions=make_session_factory(engine),
                           blobs=counting.store), counting)
    engine.dispose()


def _store(ctx: RegistryContext, namespace: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    writer = ctx.blobs.writer(digest, len(data))
    writer.write(data)
    writer.commit()
    with ctx.transaction() as s:
        record_blob(s, digest, len(data))
        record_holding(s, namespace, [digest])
    return digest


def test_probing_another_namespaces_digest_never_reaches_the_store(
        ctx: tuple[RegistryContext, CountingStore]) -> None:
    registry, counting = ctx
    secret, own = b"the victim's private weights", b"the attacker's own file"
    victim = _store(registry, "victim", secret)
    mine = _store(registry, "attacker", own)
    counting.calls.clear()
    wanted = {victim: len(secret), mine: len(own)}
    with registry.transaction() as s:
        missing = missing_for_push(s, registry.blobs, "attacker", wanted, can_read=lambda ns: ns == "attacker")
        held = held_by(s, registry.blobs, "attacker", wanted)
    assert missing == [victim] and held == {mine}
    assert counting.asked_about(victim) == [], "the store was asked about a blob only another namespace holds"
    assert counting.asked_about(mine), "a blob the caller holds is still checked in the store"

    with registry.transaction() as s:  # a caller who may read the victim mounts it, after the store says it is there
        assert missing_for_push(s, registry.blobs, "attacker", wanted, can_read=lambda ns: True) == []
    assert counting.asked_about(victim)

    # The Hub API commit's inline files: written whether or not someone else stored the same bytes before.
    counting.calls.clear()
    store_inline(registry.blobs, (Operation("file", "notes.txt", content=secret),))
    assert "PutObject" in counting.asked_about(victim), "an inline file already stored elsewhere was not written"


def test_a_failed_scan_tells_the_namespace_nothing_about_the_store(
        ctx: tuple[RegistryContext, CountingStore]) -> None:
    registry, counting = ctx
    data = b"weights whose object the store lost"
    digest = _store(registry, "acme", data)
    with registry.transaction() as s:
        art = get_or_create_artifact(s, "acme", "lost", "model", "tester")
        version, _ = open_version(s, registry.blobs, art, "1", Manifest.from_entries([
            FileEntry("model.bin", len(data), digest)]), actor="tester")
        commit_version(s, registry.blobs, version, actor="tester")
    registry.blobs.delete(digest)  # the object is gone: every scan attempt fails
    while tasks.run_once(registry, "w"):
        pass
    with registry.transaction() as s:
        job = s.scalar(select(ScanJob))
        audited = list(s.scalars(select(AuditEntry.body).where(AuditEntry.action == "scan.failed")))
    assert job is not None and job.error is not None and "FileNotFoundError" in job.error
    assert len(audited) == 1 and json.loads(audited[0])["details"]["error"] == job.error
    store = counting.store
    for leak in (store.bucket, store.key_for(digest), "sha256/", store.client.meta.endpoint_url):
        assert leak not in job.error and leak not in audited[0], f"{leak!r} reached the tenant's audit entry"


@pytest.mark.parametrize("ttl", [-5, 0, 3601, 10**9])
def test_a_presigned_url_is_short_lived_whatever_the_setting(ttl: int) -> None:
    with pytest.raises(ValidationError, match="presigned_url_ttl_s"):
        Settings(presigned_url_ttl_s=ttl)
    assert Settings(presigned_url_ttl_s=3600).presigned_url_ttl_s == 3600


def _commit(ctx: RegistryContext, namespace: str, name: str, files: dict[str, bytes]) -> int:
    entries = [FileEntry(path, len(data), _store(ctx, namespace, data)) for path, data in files.items()]
    with ctx.transaction() as s:
        art = get_or_create_artifact(s, namespace, name, "model", "tester")
        version, _ = open_version(s, ctx.blobs, art, "1", Manifest.from_entries(entries), actor="tester")
        commit_version(s, ctx.blobs, version, actor="tester")
        return version.id


def test_one_tenants_large_version_does_not_take_every_scan_worker(
        ctx: tuple[RegistryContext, CountingStore]) -> None:
    registry, _counting = ctx
    _commit(registry, "bulk", "huge", {f"shard-{i}.json": json.dumps({"shard": i}).encode() for i in range(4)})
    lease = registry.settings.scan_lease_s
    assert tasks.claim_job(registry, "busy", lease) is not None
    assert tasks.claim_task(registry, "busy", lease) is not None  # one worker is scanning a blob of the big version
    small = _commit(registry, "other", "small", {"config.json": b'{"layers": 2}'})
    # The free worker's next step: the small version is expanded and its one blob scanned (the expanding worker
    # takes a job's first blob), before any more of "huge".
    assert tasks.run_once(registry, "free")
    with registry.transaction() as s:
        waiting = s.scalar(select(func.count()).select_from(ScanTask).where(ScanTask.state == "queued"))
        small_status = s.scalar(select(Version.scan_status).where(Version.id == small))
    assert small_status == "clean" and waiting == 3, "another tenant's version waited for every blob of the big one"


def test_fsck_during_a_store_outage_marks_nothing(ctx: tuple[RegistryContext, CountingStore], s3: S3Endpoint) -> None:
    registry, counting = ctx
    digest = _store(registry, "acme", b"weights every tenant pulls")
    # The same objects through a store that refuses every request (here: a bucket it may not reach).
    refusing = S3BlobStore.from_url(f"s3://{counting.store.bucket}-gone/blobs", endpoint_url=s3.url)
    with pytest.raises(BlobStoreUnavailable):
        fsck.run(registry.transaction, refusing, workers=1)
    with registry.transaction() as s:
        assert blob_integrity.corrupt_reason(s, digest) is None, "a store outage marked a blob corrupt"
    assert fsck.run(registry.transaction, registry.blobs, workers=1).ok
