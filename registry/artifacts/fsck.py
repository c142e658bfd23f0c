"""``mir fsck``: re-hash every stored blob against its digest and chunk list; mark what is corrupt or missing.

It runs on a machine that reaches the registry's database and blob store (like
``mir migrate``), so it needs no server and no token: whoever holds those
credentials is an operator. Blobs are read in pages (keyset pagination) and
hashed by a few threads in fixed-size chunks, so memory stays bounded whatever
the store holds. Every new mark and every cleared one is audited; a blob stored
before chunk lists existed gets its list recorded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.artifacts import integrity as blob_integrity
from registry.artifacts.models import Artifact, Blob, Version, VersionFile
from registry.core.blob_stores import BlobStore
from registry.core.blobstore import BlobStoreUnavailable
from registry.core.chunks import CHUNK_SIZE, ChunkHasher, ChunkList, chunk_count

ACTOR = "mir fsck"
_PAGE = 256
_EXAMPLES = 3

Advance = Callable[[int], None]
Sessions = Callable[[], AbstractContextManager[Session]]


@dataclass(frozen=True)
class Finding:
    """One blob whose stored bytes cannot be served."""

    digest: str
    size: int
    problem: str  # "missing" or "corrupt"
    reason: str
    newly_marked: bool
    used_by: list[str]  # a few "namespace/name@version:path" that hold it


@dataclass
class FsckReport:
    blobs: int = 0
    bytes: int = 0
    findings: list[Finding] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)  # marked blobs whose bytes hash right again
    chunk_lists_recorded: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings


@dataclass(frozen=True)
class _Hashed:
    problem: str | None
    reason: str
    chunks: ChunkList | None


def totals(session: Session) -> tuple[int, int]:
    """How many blob rows, and how many bytes they name (for the progress bar)."""
    count, size = session.execute(select(func.count(), func.coalesce(func.sum(Blob.size), 0)).select_from(Blob)).one()
    return int(count), int(size)


def _pages(sessions: Sessions) -> Iterator[list[tuple[str, int]]]:
    after = ""
    while True:
        with sessions() as s:
            rows = [(str(d), int(n)) for d, n in s.execute(
                select(Blob.digest, Blob.size).where(Blob.digest > after).order_by(Blob.digest).limit(_PAGE)
            )]
        if not rows:
            return
        yield rows
        after = rows[-1][0]


def hash_stored(blobs: BlobStore, digest: str, size: int, advance: Advance) -> _Hashed:
    """Re-hash one stored file: whole SHA-256 and chunk list, reading one chunk at a time."""
    try:
        with blobs.open_read(digest) as fh:
            whole, chunks, read = hashlib.sha256(), ChunkHasher(CHUNK_SIZE), 0
            while data := fh.read(CHUNK_SIZE):
                whole.update(data)
                chunks.update(data)
                read += len(data)
                advance(len(data))
    except FileNotFoundError:
        advance(size)
        return _Hashed("missing", "the stored file is missing", None)
    except BlobStoreUnavailable:
        raise  # the store, not this blob: marking it would refuse every download of it until the next fsck
    except OSError as exc:
        advance(size)
        return _Hashed("missing", f"the stored file cannot be read: {exc.strerror}", None)
    if read != size:
        advance(max(0, size - read))
        return _Hashed("corrupt", f"the stored file has {read} bytes, the digest names {size}", None)
    actual = "sha256:" + whole.hexdigest()
    if actual != digest:
        return _Hashed("corrupt", f"the stored bytes hash to {actual}", chunks.finish())
    return _Hashed(None, "", chunks.finish())


def _used_by(session: Session, digest: str) -> list[str]:
    rows = session.execute(
        select(Artifact.namespace, Artifact.name, Version.version, VersionFile.path)
        .join(Version, Version.id == VersionFile.version_id).join(Artifact, Artifact.id == Version.artifact_id)
        .where(VersionFile.digest == digest).order_by(Version.id).limit(_EXAMPLES)
    )
    return [f"{ns}/{name}@{version}:{path}" for ns, name, version, path in rows]


def _differing_chunks(session: Session, digest: str, found: ChunkList | None) -> str:
    """Which chunks differ from the list recorded at upload (where the damage is), as a note for the reason."""
    if found is None:
        return ""
    recorded = blob_integrity.chunk_hashes(session, digest, 0, len(found))
    if recorded is None or recorded.chunk_size != found.chunk_size:
        return ""
    bad = [i for i in range(len(found)) if found.hash_of(i) != recorded.hash_of(i)]
    if not bad:
        return ""
    listed = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
    noun, verb = ("chunks", "differ") if len(bad) > 1 else ("chunk", "differs")
    return f" ({noun} {listed} of {len(found)} {verb} from the upload)"


def _settle(session: Session, digest: str, size: int, hashed: _Hashed, report: FsckReport) -> None:
    """Record what hashing one blob found: mark it, clear an old mark, or fill in its chunk list."""
    if hashed.problem is not None:
        reason = hashed.reason + _differing_chunks(session, digest, hashed.chunks)
        marked = blob_integrity.mark_corrupt(session, digest, size, reason, actor=ACTOR, detected_by="fsck")
        report.findings.append(Finding(digest, size, hashed.problem, reason, marked, _used_by(session, digest)))
        return
    assert hashed.chunks is not None
    if blob_integrity.clear_mark(session, digest, actor=ACTOR, detected_by="fsck"):
        report.repaired.append(digest)
    recorded = blob_integrity.chunk_hashes(session, digest, 0, chunk_count(size, hashed.chunks.chunk_size))
    if recorded is None:
        blob_integrity.record_chunks(session, digest, hashed.chunks)
        report.chunk_lists_recorded += 1
    elif recorded != hashed.chunks:
        blob_integrity.replace_chunks(session, digest, hashed.chunks)
        report.chunk_lists_recorded += 1


def run(
    sessions: Sessions, blobs: BlobStore, *, workers: int = 4, advance: Advance = lambda _n: None,
) -> FsckReport:
    """Check every blob row; ``sessions()`` opens a transaction (a context manager) for each page's marks."""
    report = FsckReport()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for page in _pages(sessions):
            hashed = list(pool.map(lambda row: hash_stored(blobs, row[0], row[1], advance), page))
            with sessions() as s:
                for (digest, size), result in zip(page, hashed, strict=True):
                    _settle(s, digest, size, result, report)
                    report.blobs += 1
                    report.bytes += size
    return report
