"""Listing the files of a directory that is about to be hashed, signed or verified.

Every tool that hashes a model must agree on *which* files make up the model,
or signatures stop matching. We follow OpenSSF model-signing here (regular
files only, the git metadata left out by default, empty directories ignored)
and add what a registry needs: every relative path is validated with
:mod:`signing.paths`, and symbolic links may only point at regular files inside
the root, so a hostile tree cannot make us hash (and then publish digests of)
``/etc/shadow`` or loop forever through a directory link.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from signing.paths import InvalidPathError, check_path_set, validate_relative_path

# The paths model-signing leaves out by default (its ``ignore_git_paths``); using
# the same set keeps a directory's file list identical in both tools.
DEFAULT_IGNORE_PATHS: tuple[str, ...] = (".git", ".gitattributes", ".github", ".gitignore")


class TreeError(ValueError):
    """A directory that cannot be listed safely: escaping symlink, special file, bad name."""


@dataclass(frozen=True, slots=True)
class TreeFile:
    """One regular file of the tree: its manifest path, where to read it, its size when listed."""

    path: str
    source: Path
    size: int
    via_symlink: bool = False


def is_ignored(path: str, ignore_paths: Iterable[str]) -> bool:
    """True if ``path`` is one of ``ignore_paths`` or lies under one of them."""
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in ignore_paths)


def normalize_ignore_paths(ignore_paths: Iterable[str]) -> tuple[str, ...]:
    """Validate ignore entries as relative paths (a trailing slash is tolerated) and sort them."""
    result = set()
    for raw in ignore_paths:
        entry = raw.rstrip("/") if isinstance(raw, str) else raw
        try:
            result.add(validate_relative_path(entry))
        except InvalidPathError as exc:
            raise TreeError(f"bad ignore path {raw!r}: {exc}") from exc
    return tuple(sorted(result))


def list_files(root: str | os.PathLike[str], ignore_paths: Iterable[str] = DEFAULT_IGNORE_PATHS) -> list[TreeFile]:
    """Return the regular files under ``root`` sorted by path, refusing anything unsafe.

    Raises :class:`TreeError` naming the offending path for: a root that is not a
    directory, a name that is not a canonical manifest path, a symlink that leaves
    the root, dangles, or points at a directory, and sockets, FIFOs or devices.
    """
    ignore = normalize_ignore_paths(ignore_paths)
    root_path = Path(root)
    if not root_path.is_dir():
        raise TreeError(f"{root_path}: not a directory")
    real_root = Path(os.path.realpath(root_path))
    files: list[TreeFile] = []
    stack: list[tuple[str, Path]] = [("", root_path)]
    while stack:
        prefix, directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            raise TreeError(f"{directory}: cannot list directory: {exc.strerror or exc}") from exc
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            if is_ignored(rel, ignore):
                continue
            try:
                validate_relative_path(rel)
            except InvalidPathError as exc:
                raise TreeError(f"{Path(entry.path)}: file name not allowed in a manifest: {exc}") from exc
            files_or_dir = _classify(entry, rel, real_root)
            if isinstance(files_or_dir, TreeFile):
                files.append(files_or_dir)
            else:
                stack.append((rel + "/", Path(entry.path)))
    files.sort(key=lambda f: f.path)
    try:
        check_path_set([f.path for f in files])
    except InvalidPathError as exc:  # pragma: no cover - a file system cannot produce duplicates
        raise TreeError(f"{root_path}: {exc}") from exc
    return files


def _classify(entry: os.DirEntry[str], rel: str, real_root: Path) -> TreeFile | None:
    """A TreeFile for a file (or a safe symlink to one), None for a directory to descend into."""
    where = Path(entry.path)
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError as exc:
        raise TreeError(f"{where}: cannot stat: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        return None
    if stat.S_ISREG(st.st_mode):
        return TreeFile(path=rel, source=where, size=st.st_size)
    if stat.S_ISLNK(st.st_mode):
        target = Path(os.path.realpath(where))
        if target != real_root and real_root not in target.parents:
            raise TreeError(f"{where}: symlink points outside the directory being hashed ({target})")
        try:
            tst = os.stat(target)
        except OSError as exc:
            raise TreeError(f"{where}: dangling symlink: {exc.strerror or exc}") from exc
        if not stat.S_ISREG(tst.st_mode):
            raise TreeError(f"{where}: symlink to something other than a regular file is not supported")
        return TreeFile(path=rel, source=target, size=tst.st_size, via_symlink=True)
    raise TreeError(f"{where}: not a regular file or directory (socket, FIFO or device)")
