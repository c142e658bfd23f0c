"""The JSON the Hub API returns about a version: repo info, ``siblings``, tree entries, paths-info.

Pure functions over a version's file list. Every file is described as an LFS
file (``lfs.oid`` / ``lfs.sha256`` = the stored sha256), so the client caches it
under that name and ``hf cache verify`` checks it with sha256. Never a
``xetHash``: its presence switches the client to the Xet protocol.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from registry.hf.ids import directory_oid, pointer_oid, pointer_size, sha256_hex


@dataclass(frozen=True, slots=True)
class RepoFile:
    """One file of a served version: path, size and the sha256 hex of its content."""

    path: str
    size: int
    sha256: str

    @classmethod
    def from_digest(cls, path: str, size: int, digest: str) -> RepoFile:
        return cls(path, size, sha256_hex(digest))

    @property
    def oid(self) -> str:
        return pointer_oid(self.sha256, self.size)

    def tree_entry(self) -> dict[str, Any]:
        lfs = {"oid": self.sha256, "size": self.size, "pointerSize": pointer_size(self.sha256, self.size)}
        return {"type": "file", "oid": self.oid, "size": self.size, "path": self.path, "lfs": lfs}

    def sibling(self) -> dict[str, Any]:
        lfs = {"sha256": self.sha256, "size": self.size, "pointerSize": pointer_size(self.sha256, self.size)}
        return {"rfilename": self.path, "size": self.size, "blobId": self.oid, "lfs": lfs}


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def directory_oids(files: Sequence[RepoFile]) -> dict[str, str]:
    """The oid of every directory of the tree, from the files below it."""
    children: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for f in files:
        for directory in _ancestors(f.path):
            children[directory].append((f.path, f.oid))
    return {directory: directory_oid(items) for directory, items in children.items()}


def _directory_entry(path: str, oid: str) -> dict[str, Any]:
    return {"type": "directory", "oid": oid, "size": 0, "path": path}


def tree_entries(files: Sequence[RepoFile], path: str, recursive: bool) -> list[dict[str, Any]] | None:
    """Entries under folder ``path`` ("" = root), sorted by path; None when ``path`` is not a folder."""
    dirs = directory_oids(files)
    if path and path not in dirs:
        return None
    prefix = f"{path}/" if path else ""
    entries: list[dict[str, Any]] = []
    for directory, oid in dirs.items():
        if directory.startswith(prefix) and (recursive or _parent(directory) == path):
            entries.append(_directory_entry(directory, oid))
    for f in files:
        if f.path.startswith(prefix) and (recursive or _parent(f.path) == path):
            entries.append(f.tree_entry())
    entries.sort(key=lambda e: e["path"])
    return entries


def paths_info(files: Sequence[RepoFile], paths: Iterable[str]) -> list[dict[str, Any]]:
    """Entries for the requested paths that exist (files or folders); unknown paths are left out, as on HF."""
    by_path = {f.path: f for f in files}
    dirs = directory_oids(files)
    result: list[dict[str, Any]] = []
    for raw in dict.fromkeys(paths):
        path = raw.strip("/")
        if path in by_path:
            result.append(by_path[path].tree_entry())
        elif path in dirs:
            result.append(_directory_entry(path, dirs[path]))
    return result


def hf_time(value: datetime | None) -> str | None:
    """``2026-11-22T11:58:15.000Z``: the timestamp spelling the Hub uses."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def repo_info(
    *,
    repo: str,
    kind: str,
    commit: str,
    files: Sequence[RepoFile],
    version: str | None,
    manifest_digest: str | None,
    aliases: Sequence[str],
    created_at: datetime | None,
    last_modified: datetime | None,
) -> dict[str, Any]:
    """``/api/{models|datasets}/{repo}[/revision/{rev}]``: what the client needs, plus a ``mir`` provenance block.

    A repo with no version yet has ``version`` None, no files and the repo's empty commit id as ``sha``.
    """
    return {
        "_id": commit[:24],
        "id": repo,
        **({"modelId": repo} if kind == "model" else {}),
        "sha": commit,
        "private": True,  # reading any repo here needs a token
        "gated": False,
        "disabled": False,
        "lastModified": hf_time(last_modified),
        "createdAt": hf_time(created_at),
        "tags": [],
        "downloads": 0,
        "likes": 0,
        "siblings": [f.sibling() for f in files],
        "usedStorage": sum(f.size for f in files),
        "mir": {
            "artifact": repo,
            "kind": kind,
            "version": version,
            "manifest_digest": manifest_digest,
            "aliases": sorted(aliases),
        },
    }


def repo_list_entry(
    *, repo: str, kind: str, created_at: datetime | None, last_modified: datetime | None
) -> dict[str, Any]:
    """One repo of ``/api/models`` or ``/api/datasets`` (``HfApi.list_models``): ids and dates, no files."""
    namespace = repo.split("/", 1)[0]
    return {
        "id": repo,
        **({"modelId": repo} if kind == "model" else {}),
        "author": namespace,
        "private": True,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "createdAt": hf_time(created_at),
        "lastModified": hf_time(last_modified or created_at),
        "mir": {"artifact": repo, "kind": kind},
    }


def commit_entry(
    *, commit: str, author: str | None, date: datetime | None, description: str | None, version: str,
    manifest_digest: str, formatted: bool,
) -> dict[str, Any]:
    """One commit of ``/api/{type}s/{repo}/commits/{rev}`` (``HfApi.list_repo_commits``): a committed version.

    The title is the description's first line (an HF commit's summary), else the version name.
    """
    text = (description or "").strip()
    title, _, message = text.partition("\n")
    title = title.strip() or f"version {version}"
    message = message.strip()
    entry: dict[str, Any] = {
        "id": commit,
        "authors": [{"user": author or "unknown"}],
        "date": hf_time(date),
        "title": title,
        "message": message,
        "mir": {"version": version, "manifest_digest": manifest_digest},
    }
    if formatted:
        entry["formatted"] = {"title": html.escape(title), "message": html.escape(message)}
    return entry
