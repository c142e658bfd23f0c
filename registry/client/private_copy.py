"""A private, read-only copy of a model directory, hashed in the same read that copies it.

``mir run --verify`` used to hash DIR and then let the job read DIR again: whoever could write DIR in between
chose what the job loaded. Here every file is read once; the bytes go both into the hasher and into a fresh
directory that only this user can enter (mode 0700 while copying, then files 0400 and directories 0500), by
default on a tmpfs (``/dev/shm``). The digests checked are those of the copy's own bytes, so what was verified
is exactly what the job reads. The copy is removed when the job ends; copies left by a runner that was killed
are swept by the next run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from signing.hashing import default_workers, new_hasher, run_parallel
from signing.manifest import FileEntry, Manifest
from signing.tree import TreeError, TreeFile, list_files

COPY_PREFIX = "mir-verified-"
CHUNK = 8 << 20
_SHM = Path("/dev/shm")  # noqa: S108 - only ever the parent of a mkdtemp directory (0700, unpredictable name)


class CopyRefused(Exception):
    """The copy would not fit (``--max-copy-bytes`` or the free space where it goes)."""


class UnsafeCopyRoot(PermissionError):
    """Someone else could rename the copy (or a folder above it) and put their own files in its place."""


@dataclass(frozen=True)
class PrivateCopy:
    """Where the copy is, and the manifest of the bytes it holds (hashed while they were written)."""

    root: Path
    manifest: Manifest
    total_bytes: int


def default_copy_root() -> Path:
    """A tmpfs when there is one (RAM: nothing reaches a disk, gone at reboot), else the temp directory."""
    if _SHM.is_dir() and os.access(_SHM, os.W_OK | os.X_OK):
        return _SHM
    return Path(tempfile.gettempdir())


def make_private_copy(
    directory: Path,
    *,
    root: Path | None = None,
    max_bytes: int | None = None,
    algorithm: str = "sha256",
    workers: int | None = None,
    only: Iterable[str] | None = None,
) -> PrivateCopy:
    """Copy the files of ``directory`` (the same list a manifest is made of; ``only`` those paths, if given) into
    a new private directory.

    Raises CopyRefused before writing anything when the files exceed ``max_bytes`` or the free space of
    ``root``; TreeError for an unsafe tree; OSError for an unreadable file. On any failure the partial copy is
    removed.
    """
    root = root or default_copy_root()
    check_copy_root(root)
    files = list_files(directory)
    if only is not None:
        wanted = set(only)
        files = [f for f in files if f.path in wanted]
    total = sum(f.size for f in files)
    if max_bytes is not None and total > max_bytes:
        raise CopyRefused(f"{directory} holds {total} bytes, more than --max-copy-bytes {max_bytes}")
    free = shutil.disk_usage(root).free
    if total > free:
        raise CopyRefused(f"{directory} holds {total} bytes; {root} has only {free} bytes free")
    sweep_stale_copies(root)
    target = Path(tempfile.mkdtemp(prefix=f"{COPY_PREFIX}{os.getpid()}-", dir=root))
    try:
        for rel in sorted({str(Path(f.path).parent) for f in files} - {"."}):
            (target / rel).mkdir(mode=0o700, parents=True, exist_ok=True)
        n_workers = workers if workers is not None else default_workers()
        entries = run_parallel(lambda f: _copy_one(f, target, algorithm), files, n_workers)
        _seal(target)
    except BaseException:
        remove_copy(target)
        raise
    return PrivateCopy(target, Manifest.from_entries(entries), total)


def check_copy_root(root: Path) -> None:
    """Refuse a copy root that another user could rename things in, itself or any folder above it.

    Whoever can rename the copy's directory can put one of their own under its name after the bytes were
    hashed, and the job would load that. A folder is safe when it belongs to this user or to root and, if
    others may write to it, has the sticky bit (``/tmp``, ``/dev/shm``), so they cannot rename what is ours.
    """
    resolved = root.resolve(strict=True)
    for folder in (resolved, *resolved.parents):
        st = os.stat(folder)
        shared = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX
        if st.st_uid not in (os.getuid(), 0) or shared:
            who = "belongs to another user" if st.st_uid not in (os.getuid(), 0) else "others may rename in it"
            raise UnsafeCopyRoot(f"copy root {root}: {folder} {who}, so the verified copy could be swapped; "
                                 "pick a --copy-dir only you (or root, with the sticky bit) control")


def _copy_one(tree_file: TreeFile, target: Path, algorithm: str) -> FileEntry:
    """Read ``tree_file`` once: every chunk is hashed and written; the digest describes the copy.

    Only the regular file of the listed size is read: one swapped since the listing for a symlink, a FIFO or
    a device, or that grew, is refused before it could block the copy or fill the (RAM-backed) copy root.
    """
    hasher = new_hasher(algorithm)
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    size = 0
    nofollow, cloexec = getattr(os, "O_NOFOLLOW", 0), getattr(os, "O_CLOEXEC", 0)
    changed = f"{tree_file.source}: changed while it was being copied"
    try:
        in_fd = os.open(tree_file.source, os.O_RDONLY | nofollow | cloexec | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise TreeError(f"{changed} ({exc.strerror or exc})") from exc
    try:
        if not stat.S_ISREG(os.fstat(in_fd).st_mode):
            raise TreeError(f"{changed}: no longer a regular file")
        out_fd = os.open(target / tree_file.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | nofollow | cloexec, 0o600)
        try:
            while n := os.readv(in_fd, [view[: min(CHUNK, tree_file.size + 1 - size)]]):
                hasher.update(view[:n])
                _write_all(out_fd, view[:n])
                size += n
                if size > tree_file.size:
                    raise TreeError(f"{changed}: it grew past the {tree_file.size} bytes listed")
        finally:
            os.close(out_fd)
    finally:
        os.close(in_fd)
    if size != tree_file.size:
        raise TreeError(f"{changed}: {size} bytes, {tree_file.size} listed")
    return FileEntry(path=tree_file.path, size=size, digest=f"{algorithm}:{hasher.hexdigest()}")


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _seal(target: Path) -> None:
    """Files 0400, directories 0500, deepest first: nothing in the copy can be changed without a chmod."""
    for dirpath, _dirs, names in os.walk(target, topdown=False):
        for name in names:
            os.chmod(os.path.join(dirpath, name), stat.S_IRUSR, follow_symlinks=False)
        os.chmod(dirpath, stat.S_IRUSR | stat.S_IXUSR)


def remove_copy(target: Path) -> None:
    """Remove a copy made by :func:`make_private_copy`, sealed or not; a copy already gone is fine.

    A symlink in its place is left alone: following it would chmod and delete what it points at.
    """
    if target.is_symlink() or not target.exists():
        return
    for dirpath, _dirs, _names in os.walk(target):
        with contextlib.suppress(OSError):
            os.chmod(dirpath, stat.S_IRWXU)
    shutil.rmtree(target)


def sweep_stale_copies(root: Path) -> list[Path]:
    """Remove copies whose runner is gone (killed before it could clean up); returns what was removed."""
    removed = []
    for entry in root.glob(f"{COPY_PREFIX}*"):
        pid_text = entry.name[len(COPY_PREFIX):].split("-", 1)[0]
        try:  # another runner may be removing the same entry right now
            if not pid_text.isdigit() or entry.is_symlink() or not entry.is_dir() \
                    or entry.stat().st_uid != os.getuid():
                continue
            if not _alive(int(pid_text)):
                remove_copy(entry)
                removed.append(entry)
        except FileNotFoundError:
            continue
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
