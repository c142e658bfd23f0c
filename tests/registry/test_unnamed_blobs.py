"""The local blob store's unnamed writer: bytes stored under the SHA-256 they hash to, or nothing at all.

(The S3 store's twin is tested in ``test_s3_blobstore``; the route that uses both in ``e2e/test_early_upload``.)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from registry.core.blobstore import BlobSizeMismatch, BlobTooLarge, LocalBlobStore


def test_bytes_are_stored_under_what_they_hash_to(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    data = os.urandom(3 << 20)
    writer = store.unnamed_writer(len(data))
    writer.write_pieces([data[: 1 << 20], data[1 << 20:]])
    assert writer.digest is None and next(p.name for p in store.tmp_dir.iterdir()).startswith("unnamed.")
    writer.commit()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert writer.digest == digest and store.path_for(digest).read_bytes() == data
    assert writer.chunks is not None and writer.blake3_digest is not None
    assert list(store.tmp_dir.iterdir()) == []


@pytest.mark.parametrize("problem", ["short", "long"])
def test_a_body_of_the_wrong_length_leaves_nothing(tmp_path: Path, problem: str) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    data = os.urandom(10_000)
    writer = store.unnamed_writer(len(data) + 1 if problem == "short" else len(data) - 1)
    with pytest.raises(BlobTooLarge if problem == "long" else BlobSizeMismatch):
        try:
            writer.write(data)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
    assert list(store.tmp_dir.iterdir()) == [] and list(store.iter_digests()) == []


def test_a_crashed_unnamed_upload_is_swept(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    writer = store.unnamed_writer(100)
    writer.write(b"x" * 50)  # the process "dies" here: the temp file stays, named by who wrote it
    assert store.sweep_temp(older_than_s=3600) == 0  # a live upload of this very process is left alone
    assert store.sweep_temp(older_than_s=0) == 1 and list(store.tmp_dir.iterdir()) == []
