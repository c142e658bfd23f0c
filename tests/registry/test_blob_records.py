"""Recording received blobs: new rows skip the fill-in and repair statements, existing rows still get them."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import select

from registry.artifacts.integrity import REPAIRED_ACTION, mark_corrupt
from registry.artifacts.models import Blob
from registry.artifacts.uploads import record_received, store_bytes
from registry.artifacts.versions import BlobRecord, record_blobs
from registry.audit.models import AuditEntry
from tests.support.service import Reg


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_record_blobs_names_the_rows_it_inserted_and_fills_a_missing_blake3(reg: Reg) -> None:
    old, new = b"recorded before BLAKE3 digests were kept", b"arrives now"
    with reg.session() as s:
        s.add(Blob(digest=digest_of(old), size=len(old)))  # as an early release recorded it
    with reg.session() as s:
        inserted = record_blobs(s, [BlobRecord(digest_of(old), len(old), "blake3:" + "a" * 64),
                                    BlobRecord(digest_of(new), len(new), "blake3:" + "b" * 64)])
    assert inserted == {digest_of(new)}
    with reg.session() as s:
        stored = {d: b for d, b in s.execute(select(Blob.digest, Blob.blake3))}
        assert stored == {digest_of(old): "blake3:" + "a" * 64, digest_of(new): "blake3:" + "b" * 64}
    with reg.session() as s:  # a BLAKE3 digest once recorded is never replaced
        assert record_blobs(s, [BlobRecord(digest_of(old), len(old), "blake3:" + "c" * 64)]) == set()
    with reg.session() as s:
        assert s.scalar(select(Blob.blake3).where(Blob.digest == digest_of(old))) == "blake3:" + "a" * 64


def test_bytes_received_again_clear_a_corrupt_mark_while_new_blobs_need_none(reg: Reg) -> None:
    rotten, fresh = b"bytes whose stored copy rotted", b"bytes never seen before"
    with reg.session() as s:
        record_blobs(s, [BlobRecord(digest_of(rotten), len(rotten))])
    with reg.session() as s:
        assert mark_corrupt(s, digest_of(rotten), len(rotten), "stored bytes hash differently", actor="test",
                            detected_by="test")
    received = {digest_of(d): (len(d), store_bytes(reg.blobs, digest_of(d), d)) for d in (rotten, fresh)}
    with reg.session() as s:
        record_received(s, reg.blobs, "acme", received, "pusher")
    with reg.session() as s:
        marks = {d: c for d, c in s.execute(select(Blob.digest, Blob.corrupt_at))}
    assert marks == {digest_of(rotten): None, digest_of(fresh): None}
    with reg.session() as s:
        repaired = list(s.scalars(select(AuditEntry.body).where(AuditEntry.action == REPAIRED_ACTION)))
    assert [json.loads(body)["details"]["digest"] for body in repaired] == [digest_of(rotten)]
