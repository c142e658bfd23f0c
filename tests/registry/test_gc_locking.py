"""Garbage collection never removes a blob that a commit has found and is about to list (both databases)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from datetime import timedelta

from sqlalchemy import update

from registry.artifacts import gc
from registry.artifacts.holdings import held_by, record_holding
from registry.artifacts.models import Blob
from registry.artifacts.versions import get_or_create_artifact, open_version, record_blob
from registry.core.tables import utcnow
from signing.manifest import FileEntry, Manifest
from tests.support.service import Reg


def _stored_unreferenced(reg: Reg, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    writer = reg.blobs.writer(digest, len(data))
    writer.write(data)
    writer.commit()
    old = time.time() - 2 * 86400
    os.utime(reg.blobs.path_for(digest), (old, old))  # written two days ago, like its row
    with reg.session() as s:
        record_blob(s, digest, len(data))
        record_holding(s, "acme", [digest])
        s.execute(update(Blob).where(Blob.digest == digest).values(created_at=utcnow() - timedelta(days=2)))
    return digest


def test_a_collection_waits_for_a_commit_that_found_the_blob(reg: Reg) -> None:
    data = b"weights that an old aborted push left"
    digest = _stored_unreferenced(reg, data)
    found = threading.Event()
    reports: list[gc.GcReport] = []

    def commit_that_lists_it() -> None:
        with reg.session() as s:
            assert digest in held_by(s, reg.blobs, "acme", {digest: len(data)})  # the existence check
            found.set()
            time.sleep(1.0)  # a slow commit: collection runs meanwhile and must wait for it
            art = get_or_create_artifact(s, "acme", "m", "model", "tester")
            open_version(s, reg.blobs, art, "1", Manifest.from_entries([FileEntry("w.bin", len(data), digest)]),
                         actor="tester")

    committer = threading.Thread(target=commit_that_lists_it)
    committer.start()
    assert found.wait(30)
    collector = threading.Thread(target=lambda: reports.append(gc.collect(reg.session, reg.blobs,
                                                                          min_age=timedelta(0))))
    collector.start()
    committer.join(60)
    collector.join(60)
    [report] = reports
    assert report.collected == []
    if reg.engine.dialect.name == "postgresql":
        # PostgreSQL listed it as unreferenced while the commit ran; the locked re-check saw the new listing.
        # (SQLite's write lock made the whole collection wait, so it never looked unreferenced there.)
        assert report.kept_referenced == 1
    assert reg.blobs.exists(digest, len(data))


def test_an_unreferenced_old_blob_goes_with_its_rows(reg: Reg) -> None:
    digest = _stored_unreferenced(reg, b"nobody lists me")
    report = gc.collect(reg.session, reg.blobs, min_age=timedelta(hours=1))
    assert [c.digest for c in report.collected] == [digest]
    assert not reg.blobs.exists(digest)
    with reg.session() as s:
        assert s.get(Blob, digest) is None
        assert held_by(s, reg.blobs, "acme", {digest: 15}) == set()
