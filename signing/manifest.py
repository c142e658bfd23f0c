"""The manifest: a version's file list (path, size, digest) and its own digest.

The manifest digest identifies a version's content. It is computed over a
canonical JSON form (files sorted by path, keys sorted, no whitespace) so that
any client can recompute it from the file list alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from signing.digests import validate_digest
from signing.paths import check_path_set, check_portable_paths, validate_relative_path

MANIFEST_MEDIA_TYPE = "application/vnd.mir.manifest.v1+json"
MAX_FILE_SIZE = 1 << 50


class InvalidManifestError(ValueError):
    """A manifest that does not follow the path, size and digest rules."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a version: where it lives, how big it is, what it hashes to."""

    path: str
    size: int
    digest: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "digest": self.digest}


@dataclass(frozen=True, slots=True)
class Manifest:
    """An ordered, validated file list. Build it with :meth:`from_entries` or :meth:`from_dict`."""

    files: tuple[FileEntry, ...]

    @classmethod
    def from_entries(cls, entries: Iterable[FileEntry]) -> Manifest:
        files = tuple(sorted(entries, key=lambda e: e.path))
        for entry in files:
            try:
                validate_relative_path(entry.path)
                validate_digest(entry.digest)
            except ValueError as exc:
                raise InvalidManifestError(str(exc)) from exc
            if not isinstance(entry.size, int) or isinstance(entry.size, bool):
                raise InvalidManifestError(f"size of {entry.path!r} must be an integer")
            if entry.size < 0 or entry.size > MAX_FILE_SIZE:
                raise InvalidManifestError(f"size of {entry.path!r} out of range: {entry.size}")
        try:
            check_path_set([f.path for f in files])
        except ValueError as exc:
            raise InvalidManifestError(str(exc)) from exc
        return cls(files)

    @classmethod
    def from_dict(cls, data: object) -> Manifest:
        """Parse ``{"files": [{"path", "size", "digest"}, ...]}``, refusing unknown shapes."""
        if not isinstance(data, Mapping) or not isinstance(data.get("files"), list):
            raise InvalidManifestError("manifest must be an object with a 'files' list")
        entries = []
        for item in data["files"]:
            if not isinstance(item, Mapping) or set(item) != {"path", "size", "digest"}:
                raise InvalidManifestError("each manifest file must have exactly 'path', 'size' and 'digest'")
            entries.append(FileEntry(path=item["path"], size=item["size"], digest=item["digest"]))
        return cls.from_entries(entries)

    def check_portable(self) -> Manifest:
        """Refuse paths that are not portable (see :mod:`signing.paths`: trailing dots and spaces, Windows device
        names, invisible format characters, NFKC forms that change a path) or that collide ignoring case and
        NFKC forms (they collide on macOS and Windows); returns ``self``.

        Registry rules, kept out of :meth:`from_entries` so manifests made by other tools (model-signing on a
        case-sensitive file system) still parse and verify.
        """
        try:
            check_portable_paths([f.path for f in self.files])
        except ValueError as exc:
            raise InvalidManifestError(str(exc)) from exc
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"files": [f.to_dict() for f in self.files]}

    def canonical_bytes(self) -> bytes:
        """The exact bytes the manifest digest is computed over."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.canonical_bytes()).hexdigest()

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def by_path(self) -> dict[str, FileEntry]:
        return {f.path: f for f in self.files}
