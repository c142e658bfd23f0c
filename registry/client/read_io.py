"""Low-level reading of one file: open it safely, read exactly, check the end and the digest."""

from __future__ import annotations

import hmac
import io
import os
import stat
from typing import TYPE_CHECKING

from registry.client.ordered_hasher import OrderedHasher
from registry.client.read_errors import VerifiedLoadError
from registry.client.read_state import Job, Run

if TYPE_CHECKING:
    pass


MAX_IOVECS = 512  # well under IOV_MAX (1024 on Linux)


def open_regular(job: Job) -> int:
    """Open without following a final symlink and without blocking on a FIFO swapped in after listing."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(job.source, flags)
    except OSError as exc:
        raise VerifiedLoadError(job.path, f"cannot open: {exc.strerror or exc}", code="unreadable") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise VerifiedLoadError(job.path, "not a regular file any more (replaced after listing?)", code="changed")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_exact(fd: int, views: list[memoryview], offset: int, job: Job) -> None:
    """Fill ``views`` with the file's bytes from ``offset`` on; a short file is an error, never a partial read."""
    views = [v for v in views if len(v)]
    while views:
        try:
            if hasattr(os, "preadv"):
                n = os.preadv(fd, views, offset)
            else:  # pragma: no cover - platforms without preadv
                with io.FileIO(fd, "rb", closefd=False) as handle:
                    handle.seek(offset)
                    n = handle.readinto(views[0]) or 0
        except OSError as exc:
            raise VerifiedLoadError(job.path, f"read failed: {exc.strerror or exc}", code="unreadable") from exc
        if n == 0:
            raise VerifiedLoadError(job.path, f"file ended at byte {offset} while being read", code="changed")
        offset += n
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if n:
            views[0] = views[0][n:]


def check_eof(fd: int, size: int, job: Job) -> None:
    try:
        extra = os.pread(fd, 1, size)
    except OSError as exc:
        raise VerifiedLoadError(job.path, f"read failed: {exc.strerror or exc}", code="unreadable") from exc
    if extra:
        raise VerifiedLoadError(job.path, f"file grew past {size} bytes while being read", code="changed")


def verify_digest(hasher: OrderedHasher, job: Job) -> None:
    actual = hasher.hexdigest()
    if not hmac.compare_digest(actual, job.hexdigest):
        raise VerifiedLoadError(
            job.path,
            f"content does not match the verified digest: expected {job.algorithm}:{job.hexdigest}, "
            f"read {job.algorithm}:{actual}",
            code="digest_mismatch",
        )


def drain(fd: int, size: int, offset: int, hasher: OrderedHasher, job: Job, run: Run) -> None:
    """Hash the rest of a file we will not use, so a mismatch is reported as one."""
    buf = bytearray(min(run.chunk_size, max(size - offset, 0)))
    while offset < size:
        run.check_abort()
        view = memoryview(buf)[: min(len(buf), size - offset)]
        read_exact(fd, [view], offset, job)
        hasher.feed(view)
        offset += len(view)
    check_eof(fd, size, job)
