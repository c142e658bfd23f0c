"""Content-addressed blobs in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, moto).

Keys are content addresses, ``<prefix>/sha256/ab/cd/<hex>``, as on a local disk. An upload streams into a
multipart upload of that very key while it is hashed, and the upload is completed only when its size and
SHA-256 match; otherwise it is aborted. S3 shows an object only once its multipart upload completes, so the
object under a digest's key holds exactly those bytes or does not exist, and a crash leaves only an unfinished
multipart upload, which ``sweep_temp`` aborts. Memory per upload is one part.

boto3 (botocore) is the client: it reads endpoint, region and credentials the usual way (``AWS_*`` variables,
config files, instance roles), and ``MIR_S3_ENDPOINT_URL`` points it at MinIO or another S3-compatible server.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from registry.core.blobstore import (
    BlobDigestMismatch,
    BlobHashes,
    BlobStoreUnavailable,
    BlobTooLarge,
    check_growth,
    sha256_of,
)
from registry.core.chunks import ChunkList
from signing.digests import parse_digest

MiB = 1 << 20
INCOMING = "incoming"  # under the prefix: uploads whose digest is not known yet
_PART_SENDERS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="mir-s3-part")
DEFAULT_PART_SIZE = 16 * MiB  # S3 parts are at least 5 MiB (the last excepted) and at most 10,000 per object
MIN_PART_SIZE = 5 * MiB
READ_PIECE = 1 * MiB


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix``); ValueError for anything else."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an S3 blob store URL: {url!r} (use s3://bucket/prefix)")
    if parsed.query or parsed.fragment or parsed.params:
        raise ValueError(f"an S3 blob store URL takes no query or fragment: {url!r}")
    prefix = parsed.path.strip("/")
    if any(part in (".", "..") for part in prefix.split("/")):
        raise ValueError(f"invalid S3 prefix in {url!r}")
    return parsed.netloc, prefix


class _ObjectReader:
    """``read(n)`` over a streamed GET body: exactly n bytes unless the object ends first."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def read(self, n: int) -> bytes:
        if self._body is None or n <= 0:
            return b""
        pieces: list[bytes] = []
        wanted = n
        try:
            while wanted > 0:
                piece = self._body.read(wanted)
                if not piece:
                    break
                pieces.append(piece)
                wanted -= len(piece)
        except (BotoCoreError, OSError) as exc:
            raise BlobStoreUnavailable(f"object store connection lost while reading: {exc}") from None
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


class S3BlobWriter:
    """Streams one blob into a multipart upload of its final key while hashing it; ``commit`` completes it.

    With ``digest`` None the bytes name themselves: they stream into a key of their own under ``incoming/``,
    and ``commit`` copies that object (inside the store) to the key of the SHA-256 they hash to, deletes it and
    sets ``digest``. The content-addressed key still only ever holds complete, checked bytes.
    """

    def __init__(self, store: S3BlobStore, digest: str | None, expected_size: int) -> None:
        self._expected = sha256_of(digest) if digest is not None else None
        self._store = store
        self.digest = digest
        self._key = store.key_for(digest) if digest is not None else store.incoming_key()
        self.expected_size = expected_size
        self.written = 0
        self._hashes = BlobHashes()
        self.blake3_digest: str | None = None
        self.chunks: ChunkList | None = None
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._in_flight: Future[Any] | None = None
        self._done = False

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append a chunk; refuses to grow past the declared size (so an oversize body stops early)."""
        self.write_pieces([chunk])

    def write_pieces(self, pieces: list[bytes | bytearray | memoryview]) -> None:
        self.written = check_growth(self.written, pieces, self.expected_size)
        self._hashes.update(pieces, self._buffer_piece)

    def _buffer_piece(self, view: memoryview) -> None:
        part_size = self._store.part_size
        while view:
            take = min(len(view), part_size - len(self._buffer))
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) == part_size:
                self._send_part()

    def _send_part(self) -> None:
        """Hand the buffered part to the upload thread; at most one part is in flight while the next one fills.

        Sending overlaps hashing and receiving the next part, so memory is two parts per upload.
        """
        store = self._store
        if self._upload_id is None:
            created = store.call("create_multipart_upload", Bucket=store.bucket, Key=self._key)
            self._upload_id = created["UploadId"]
        self._wait_in_flight()
        number = len(self._parts) + 1
        body, self._buffer = bytes(self._buffer), bytearray()
        self._in_flight = _PART_SENDERS.submit(
            store.call, "upload_part", Bucket=store.bucket, Key=self._key,
            UploadId=self._upload_id, PartNumber=number, Body=body)
        self._parts.append({"PartNumber": number, "ETag": ""})

    def _wait_in_flight(self) -> None:
        if self._in_flight is not None:
            future, self._in_flight = self._in_flight, None
            self._parts[-1]["ETag"] = future.result()["ETag"]

    def commit(self) -> None:
        """Check size and digest, then make the object visible (complete the upload, or one PUT if small)."""
        digest = self._hashes.check(self._expected, self.written, self.expected_size)
        store, key = self._store, self._key
        if self._upload_id is None:
            store.call("put_object", Bucket=store.bucket, Key=key, Body=bytes(self._buffer))
        else:
            if self._buffer:
                self._send_part()
            self._wait_in_flight()
            store.call("complete_multipart_upload", Bucket=store.bucket, Key=key, UploadId=self._upload_id,
                       MultipartUpload={"Parts": self._parts})
        self._buffer = bytearray()
        self._done = True
        if self._expected is None:
            store.move_incoming(key, digest)
        self.digest = digest
        self.blake3_digest, self.chunks = self._hashes.finish()

    def abort(self) -> None:
        """Drop the parts sent so far; nothing becomes visible (best effort: ``sweep_temp`` retries later)."""
        self._buffer = bytearray()
        if self._in_flight is not None:
            with contextlib.suppress(Exception):
                self._in_flight.result()
            self._in_flight = None
        if self._upload_id is not None and not self._done:
            with contextlib.suppress(BlobStoreUnavailable):
                self._store.call("abort_multipart_upload", Bucket=self._store.bucket, Key=self._key,
                                 UploadId=self._upload_id)
            self._upload_id = None


class S3BlobStore:
    """Blobs under ``s3://bucket/prefix/sha256/ab/cd/<hex>``."""

    def __init__(self, bucket: str, prefix: str, client: Any, *, part_size: int = DEFAULT_PART_SIZE,
                 presign_client: Any = None) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"S3 parts must be at least {MIN_PART_SIZE} bytes")
        self.bucket = bucket
        self.prefix = prefix
        self.client = client
        self.part_size = part_size
        # Download URLs are signed for the address clients reach the store at, which may differ from the
        # registry's own (a compose network name inside, a public host outside).
        self.presign_client = presign_client if presign_client is not None else client

    @classmethod
    def from_url(cls, url: str, *, endpoint_url: str | None = None, region: str | None = None,
                 part_size: int = DEFAULT_PART_SIZE, public_endpoint_url: str | None = None) -> S3BlobStore:
        bucket, prefix = parse_s3_url(url)
        session = boto3.session.Session()

        def client_for(endpoint: str | None) -> Any:
            config = Config(retries={"max_attempts": 5, "mode": "standard"}, signature_version="s3v4",
                            s3={"addressing_style": "path" if endpoint else "auto"},
                            max_pool_connections=32)
            return session.client("s3", endpoint_url=endpoint, region_name=region, config=config)

        client = client_for(endpoint_url)
        public = client_for(public_endpoint_url) if public_endpoint_url else client
        return cls(bucket, prefix, client, part_size=part_size, presign_client=public)

    @property
    def can_presign(self) -> bool:
        return True

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key_for(self, digest: str) -> str:
        _algorithm, hex_ = parse_digest(digest)
        key = f"sha256/{hex_[:2]}/{hex_[2:4]}/{hex_}"
        return f"{self.prefix}/{key}" if self.prefix else key

    def _digest_of_key(self, key: str) -> str | None:
        name = key.rsplit("/", 1)[-1]
        if len(name) == 64 and all(c in "0123456789abcdef" for c in name) and key == self.key_for("sha256:" + name):
            return "sha256:" + name
        return None

    def call(self, operation: str, **kwargs: Any) -> Any:
        """One S3 request; an unreachable or refusing store raises BlobStoreUnavailable (never a silent miss)."""
        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if operation in ("head_object", "get_object") and code in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(kwargs.get("Key")) from None
            if operation == "get_object" and code == "InvalidRange":
                raise EOFError(kwargs.get("Range")) from None
            raise BlobStoreUnavailable(f"object store refused {operation}: {code or exc}") from None
        except BotoCoreError as exc:
            raise BlobStoreUnavailable(f"object store unreachable during {operation}: {exc}") from None

    def size_of(self, digest: str) -> int | None:
        try:
            head = self.call("head_object", Bucket=self.bucket, Key=self.key_for(digest))
        except FileNotFoundError:
            return None
        return int(head["ContentLength"])

    def stat(self, digest: str) -> tuple[int, datetime] | None:
        """Size and last write time of a stored blob, or None."""
        try:
            head = self.call("head_object", Bucket=self.bucket, Key=self.key_for(digest))
        except FileNotFoundError:
            return None
        return int(head["ContentLength"]), head["LastModified"]

    def exists(self, digest: str, size: int | None = None) -> bool:
        found = self.size_of(digest)
        return found is not None and (size is None or found == size)

    def writer(self, digest: str, expected_size: int) -> S3BlobWriter:
        return S3BlobWriter(self, digest, expected_size)

    def unnamed_writer(self, expected_size: int) -> S3BlobWriter:
        """A writer whose bytes are stored under the digest they hash to (known once ``commit`` returns)."""
        return S3BlobWriter(self, None, expected_size)

    def incoming_key(self) -> str:
        """A fresh key for bytes whose digest is not known yet (never one a digest maps to)."""
        key = f"{INCOMING}/{uuid.uuid4().hex}"
        return f"{self.prefix}/{key}" if self.prefix else key

    def move_incoming(self, key: str, digest: str) -> None:
        """Copy a completed incoming object to ``digest``'s key inside the store, then delete it. The copy
        replaces the whole object at once (S3 shows a copy only when it is complete), so the digest's key never
        holds partial bytes; a large object is copied in parts by boto3's managed copy."""
        source = {"Bucket": self.bucket, "Key": key}
        try:
            self.call("copy", CopySource=source, Bucket=self.bucket, Key=self.key_for(digest))
        finally:
            with contextlib.suppress(BlobStoreUnavailable):  # else ``sweep_temp`` deletes it later
                self.call("delete_object", Bucket=self.bucket, Key=key)

    def read_range(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes ``[start, end)`` of a blob, streamed in pieces of about 1 MiB (one ranged GET).

        FileNotFoundError if there is no such blob, EOFError if ``start`` lies past its end.
        """
        if end is not None and end <= start:
            return
        ranged = {} if start == 0 and end is None else {"Range": f"bytes={start}-{'' if end is None else end - 1}"}
        answer = self.call("get_object", Bucket=self.bucket, Key=self.key_for(digest), **ranged)
        body = answer["Body"]
        try:
            while piece := body.read(READ_PIECE):
                yield piece
        except (BotoCoreError, OSError) as exc:
            raise BlobStoreUnavailable(f"object store connection lost while reading: {exc}") from None
        finally:
            body.close()

    @contextlib.contextmanager
    def open_read(self, digest: str, start: int = 0) -> Iterator[_ObjectReader]:
        """The object from ``start`` on, as one streamed GET (FileNotFoundError when there is no such blob)."""
        ranged = {"Range": f"bytes={start}-"} if start else {}
        try:
            answer = self.call("get_object", Bucket=self.bucket, Key=self.key_for(digest), **ranged)
        except EOFError:
            yield _ObjectReader(None)  # start lies past the end: nothing to read
            return
        body = answer["Body"]
        try:
            yield _ObjectReader(body)
        finally:
            body.close()

    def delete(self, digest: str) -> None:
        self.call("delete_object", Bucket=self.bucket, Key=self.key_for(digest))

    def iter_digests(self) -> Iterator[tuple[str, int, datetime]]:
        """Every stored blob: digest, size and when it was written (keys that are not blobs are skipped)."""
        base = f"{self.prefix}/sha256/" if self.prefix else "sha256/"
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": base}
            if token:
                kwargs["ContinuationToken"] = token
            page = self.call("list_objects_v2", **kwargs)
            for item in page.get("Contents", []):
                digest = self._digest_of_key(item["Key"])
                if digest is not None:
                    yield digest, int(item["Size"]), item["LastModified"]
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def presigned_get(self, digest: str, expires_s: int, filename: str | None = None) -> str:
        """A URL that lets whoever holds it GET this one blob for ``expires_s`` seconds."""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key_for(digest)}
        if filename:
            params["ResponseContentDisposition"] = f"attachment; filename*=UTF-8''{quote(filename, safe='')}"
        try:
            url: str = self.presign_client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s)
        except (ClientError, BotoCoreError) as exc:
            raise BlobStoreUnavailable(f"cannot presign a download: {exc}") from None
        return url

    def ready(self) -> str | None:
        """None when the bucket answers, else why not (for ``/v1/ready``)."""
        try:
            self.call("head_bucket", Bucket=self.bucket)
        except BlobStoreUnavailable as exc:
            return str(exc)
        return None

    def sweep_temp(self, older_than_s: float = 0) -> int:
        """Abort multipart uploads under this prefix started more than ``older_than_s`` ago, and delete incoming
        objects written before then (crashed writers); returns how many."""
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
        return self._abort_stale_uploads(cutoff) + self._delete_stale_incoming(cutoff)

    def _delete_stale_incoming(self, cutoff: datetime) -> int:
        deleted = 0
        base = f"{self.prefix}/{INCOMING}/" if self.prefix else f"{INCOMING}/"
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": base}
        while True:
            page = self.call("list_objects_v2", **kwargs)
            for item in page.get("Contents", []):
                if item["LastModified"] <= cutoff:
                    with contextlib.suppress(BlobStoreUnavailable):
                        self.call("delete_object", Bucket=self.bucket, Key=item["Key"])
                        deleted += 1
            if not page.get("IsTruncated"):
                return deleted
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def _abort_stale_uploads(self, cutoff: datetime) -> int:
        aborted = 0
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": f"{self.prefix}/" if self.prefix else ""}
        while True:
            page = self.call("list_multipart_uploads", **kwargs)
            for upload in page.get("Uploads", []):
                if upload["Initiated"] <= cutoff and not self._active_since(upload, cutoff):
                    with contextlib.suppress(BlobStoreUnavailable):
                        self.call("abort_multipart_upload", Bucket=self.bucket, Key=upload["Key"],
                                  UploadId=upload["UploadId"])
                        aborted += 1
            if not page.get("IsTruncated"):
                return aborted
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker")

    def _active_since(self, upload: dict[str, Any], cutoff: datetime) -> bool:
        """Whether a part of ``upload`` arrived after ``cutoff``: a long upload another replica is still sending."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": upload["Key"], "UploadId": upload["UploadId"]}
        while True:
            try:
                page = self.call("list_parts", **kwargs)
            except BlobStoreUnavailable:
                return True  # cannot tell: leave it for a later sweep
            if any(part["LastModified"] > cutoff for part in page.get("Parts", [])):
                return True
            if not page.get("IsTruncated"):
                return False
            kwargs["PartNumberMarker"] = page["NextPartNumberMarker"]

    @contextlib.contextmanager
    def local_copy(self, digest: str, spool_dir: Path, max_bytes: int) -> Iterator[Path]:
        """The blob in a private temporary file (for a scanner that needs a path); removed afterwards.

        Refuses blobs over ``max_bytes`` before downloading anything, so a worker's disk use stays bounded.
        """
        size = self.size_of(digest)
        if size is None:
            raise FileNotFoundError(self.key_for(digest))
        if size > max_bytes:
            raise BlobTooLarge(f"blob of {size} bytes is over the {max_bytes}-byte spool limit")
        spool_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=spool_dir, prefix="scan-", suffix=".blob")
        path = Path(name)
        try:
            whole = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                for piece in self.read_range(digest):
                    whole.update(piece)
                    out.write(piece)
            if "sha256:" + whole.hexdigest() != digest:  # never scan (and vouch for) other bytes than the digest's
                raise BlobDigestMismatch(f"the stored object of {digest} does not hash to its digest")
            yield path
        finally:
            path.unlink(missing_ok=True)
