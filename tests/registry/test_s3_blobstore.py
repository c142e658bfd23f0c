"""The S3 blob store against a real S3 HTTP endpoint (moto's server): atomic content-addressed writes,
ranged reads, listing, presigned URLs, crash leftovers, and an unreachable store."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry.core.blobstore import BlobDigestMismatch, BlobSizeMismatch, BlobTooLarge
from registry.core.chunks import ChunkHasher
from registry.core.s3_blobstore import MIN_PART_SIZE, BlobStoreUnavailable, S3BlobStore, parse_s3_url
from tests.support.s3 import S3Endpoint, s3_server


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[S3Endpoint]:
    with s3_server() as s3:
        yield s3


@pytest.fixture
def store(endpoint: S3Endpoint) -> S3BlobStore:
    bucket = f"mir-{secrets.token_hex(4)}"
    s = S3BlobStore.from_url(f"s3://{bucket}/blobs/v1", endpoint_url=endpoint.url, part_size=MIN_PART_SIZE)
    s.client.create_bucket(Bucket=bucket)
    return s


def _write(store: S3BlobStore, data: bytes, digest: str | None = None, size: int | None = None,
           piece: int = 1 << 20) -> None:
    writer = store.writer(digest or sha(data), len(data) if size is None else size)
    try:
        for i in range(0, len(data), piece):
            writer.write(data[i:i + piece])
        writer.commit()
    except BaseException:
        writer.abort()
        raise


@pytest.mark.parametrize("size", [0, 1000, 2 * MIN_PART_SIZE + 12345], ids=["empty", "small", "multipart"])
def test_write_then_read_back(store: S3BlobStore, size: int) -> None:
    data = os.urandom(size)
    writer = store.writer(sha(data), size)
    for i in range(0, size, 700_001):
        writer.write_pieces([data[i:i + 300_000], data[i + 300_000:i + 700_001]])
    writer.commit()
    hasher = ChunkHasher()
    hasher.update(data)
    assert writer.chunks == hasher.finish()
    assert store.exists(sha(data)) and store.exists(sha(data), size) and not store.exists(sha(data), size + 1)
    assert b"".join(store.read_range(sha(data))) == data
    if size > 905:
        assert b"".join(store.read_range(sha(data), 5, 905)) == data[5:905]
        assert b"".join(store.read_range(sha(data), size - 3)) == data[-3:]
    with pytest.raises(EOFError):
        list(store.read_range(sha(data), size + 10))
    assert list(store.read_range(sha(data), 10, 10)) == []
    key = store.key_for(sha(data))
    assert key.startswith("blobs/v1/sha256/") and key.endswith(hashlib.sha256(data).hexdigest())
    assert [(d, s) for d, s, _ in store.iter_digests()] == [(sha(data), size)]


@pytest.mark.parametrize("problem", ["digest", "short", "long"])
def test_a_bad_upload_leaves_nothing_visible_or_pending(store: S3BlobStore, problem: str) -> None:
    data = os.urandom(MIN_PART_SIZE + 100)  # past one part: a multipart upload was started
    digest = sha(b"other bytes") if problem == "digest" else sha(data)
    size = {"digest": len(data), "short": len(data) + 1, "long": len(data) - 1}[problem]
    expected = {"digest": BlobDigestMismatch, "short": BlobSizeMismatch, "long": BlobTooLarge}[problem]
    with pytest.raises(expected):
        _write(store, data, digest, size)
    assert not store.exists(digest) and list(store.iter_digests()) == []
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


def test_crash_leftovers_are_swept(store: S3BlobStore) -> None:
    data = os.urandom(MIN_PART_SIZE + 1)
    writer = store.writer(sha(data), len(data))
    writer.write(data)  # a part went out; the process "dies" before commit or abort
    assert len(store.client.list_multipart_uploads(Bucket=store.bucket)["Uploads"]) == 1
    # (moto reports a fixed 2010 initiation date, so "older than an hour" cannot be told from "live" here.)
    assert store.sweep_temp(older_than_s=0) == 1
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
    assert not store.exists(sha(data))


def test_listing_skips_foreign_keys_and_pages(store: S3BlobStore) -> None:
    blobs = [os.urandom(10 + i) for i in range(3)]
    for data in blobs:
        _write(store, data)
    store.client.put_object(Bucket=store.bucket, Key="blobs/v1/sha256/ab/cd/not-a-digest", Body=b"x")
    store.client.put_object(Bucket=store.bucket, Key="blobs/v1/sha256/00/00/" + "ab" * 32, Body=b"misplaced")
    store.client.put_object(Bucket=store.bucket, Key="elsewhere/sha256/" + "cd" * 32, Body=b"x")
    assert {d for d, _, _ in store.iter_digests()} == {sha(b) for b in blobs}
    store.delete(sha(blobs[0]))
    assert not store.exists(sha(blobs[0])) and store.exists(sha(blobs[1]))


def test_presigned_url_reads_one_blob_and_expires(store: S3BlobStore) -> None:
    data = os.urandom(5000)
    _write(store, data)
    url = store.presigned_get(sha(data), 60, filename="model weights.bin")
    got = httpx.get(url, timeout=30)
    assert got.status_code == 200 and got.content == data
    assert "model%20weights.bin" in got.headers.get("content-disposition", "")
    tampered = url.replace(hashlib.sha256(data).hexdigest(), "00" * 32)
    assert httpx.get(tampered, timeout=30).status_code == 403  # the signature covers the key


def test_local_copy_is_bounded_and_removed(store: S3BlobStore, tmp_path: Path) -> None:
    data = os.urandom(4000)
    _write(store, data)
    with store.local_copy(sha(data), tmp_path / "spool", max_bytes=4000) as path:
        assert path.read_bytes() == data
    assert not path.exists() and list((tmp_path / "spool").iterdir()) == []
    with pytest.raises(BlobTooLarge), store.local_copy(sha(data), tmp_path / "spool", max_bytes=3999):
        pass
    with pytest.raises(FileNotFoundError), store.local_copy(sha(b"absent"), tmp_path / "spool", max_bytes=10):
        pass


def test_an_unreachable_or_missing_store_is_an_error_never_a_miss(endpoint: S3Endpoint) -> None:
    gone = S3BlobStore.from_url(f"s3://mir-nobucket-{secrets.token_hex(3)}", endpoint_url=endpoint.url)
    assert gone.ready() is not None
    with pytest.raises(BlobStoreUnavailable):
        _write(gone, b"x" * 10)
    dead = S3BlobStore.from_url("s3://bucket/p", endpoint_url="http://127.0.0.1:9")
    assert "unreachable" in (dead.ready() or "")
    with pytest.raises(BlobStoreUnavailable):
        dead.exists(sha(b"x"))


@pytest.mark.parametrize("url", ["s3://", "file:///x", "s3://b/../etc", "s3://b/p?x=1", "http://b/p"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_s3_url(url)
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")


def test_local_copy_refuses_an_object_that_rotted_in_the_store(store: S3BlobStore, tmp_path: Path) -> None:
    """A scanner must never vouch for bytes other than the digest's: the spooled copy is hashed on the way."""
    data = os.urandom(5000)
    _write(store, data)
    store.client.put_object(Bucket=store.bucket, Key=store.key_for(sha(data)), Body=data[:-1] + b"\0")
    with pytest.raises(BlobDigestMismatch), store.local_copy(sha(data), tmp_path / "spool", max_bytes=10_000):
        pass
    assert list((tmp_path / "spool").iterdir()) == []


@pytest.mark.parametrize("size", [1000, 2 * MIN_PART_SIZE + 12345], ids=["small", "multipart"])
def test_unnamed_bytes_land_under_their_digest_and_leave_no_incoming_object(store: S3BlobStore, size: int) -> None:
    data = os.urandom(size)
    writer = store.unnamed_writer(size)
    for i in range(0, size, 1 << 20):
        writer.write(data[i:i + (1 << 20)])
    assert writer.digest is None
    writer.commit()
    assert writer.digest == sha(data)
    assert b"".join(store.read_range(sha(data))) == data
    keys = [o["Key"] for o in store.client.list_objects_v2(Bucket=store.bucket).get("Contents", [])]
    assert keys == [store.key_for(sha(data))]  # the incoming copy is gone
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


@pytest.mark.parametrize("problem", ["short", "long"])
def test_unnamed_bytes_of_the_wrong_length_leave_nothing(store: S3BlobStore, problem: str) -> None:
    data = os.urandom(MIN_PART_SIZE + 100)
    writer = store.unnamed_writer(len(data) + 1 if problem == "short" else len(data) - 1)
    with pytest.raises(BlobTooLarge if problem == "long" else BlobSizeMismatch):
        try:
            writer.write(data)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
    assert store.client.list_objects_v2(Bucket=store.bucket).get("Contents", []) == []
    assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


def test_an_incoming_object_left_by_a_crash_is_swept(store: S3BlobStore) -> None:
    key = store.incoming_key()  # completed, then the process died before the copy and delete
    store.client.put_object(Bucket=store.bucket, Key=key, Body=b"half-way")
    _write(store, b"a real blob")
    assert store.sweep_temp(older_than_s=0) == 1
    keys = [o["Key"] for o in store.client.list_objects_v2(Bucket=store.bucket).get("Contents", [])]
    assert keys == [store.key_for(sha(b"a real blob"))]
    assert [d for d, _s, _t in store.iter_digests()] == [sha(b"a real blob")]
