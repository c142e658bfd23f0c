"""Commit ids: the 40-hex name every committed version also answers to.

The Hugging Face protocol names states of a repo by 40 lowercase hex digits, and
its clients show and cache them, so a version's commit id is what users copy
from there. It is derived, never stored: a truncated SHA-256 over (repo,
version, manifest digest), stable on every replica, and not a SHA-1, so a pusher
cannot cheaply craft two versions with one commit id. Both the HF endpoint and
the ``/v1`` references resolve commit ids through :func:`find_by_commit`.
"""

from __future__ import annotations

import hashlib
import re
import threading

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.artifacts.models import Artifact, Version

_COMMITTED = "committed"  # as registry.artifacts.versions.COMMITTED, which imports this module
COMMIT_ID = re.compile(r"^[0-9a-f]{40}$")
_COMMIT_DOMAIN = b"mir-hf-commit-v1\x00"


def is_commit_id(value: str) -> bool:
    """True for a full commit id: exactly 40 lowercase hex digits."""
    return COMMIT_ID.fullmatch(value) is not None


def commit_id(repo: str, version: str, manifest_digest: str) -> str:
    """The commit id of ``repo@version``: 40 hex digits, the same on every replica and every request."""
    material = b"\x00".join(part.encode("utf-8") for part in (repo, version, manifest_digest))
    return hashlib.sha256(_COMMIT_DOMAIN + material).hexdigest()[:40]


def empty_commit_id(repo: str) -> str:
    """The commit id of a repo that holds no committed version yet (what HF clients see as its ``main``).

    Version names are never empty, so this never equals a version's commit id.
    """
    return commit_id(repo, "", "")


def version_commit_id(version: Version) -> str:
    artifact = version.artifact
    return commit_id(f"{artifact.namespace}/{artifact.name}", version.version, version.manifest_digest)


def commit_matches(session: Session, artifact: Artifact, prefix: str) -> list[int]:
    """Ids of the committed versions of ``artifact`` whose commit id starts with ``prefix`` (or equals it)."""
    repo = f"{artifact.namespace}/{artifact.name}"
    rows = session.execute(
        select(Version.id, Version.version, Version.manifest_digest).where(
            Version.artifact_id == artifact.id, Version.state == _COMMITTED
        )
    )
    return [vid for vid, name, digest in rows if commit_id(repo, name, digest).startswith(prefix)]


# (artifact id, commit id) -> version id. Safe to keep: committed versions never change or go away, and a hit
# is re-checked against the row anyway. Pinned-commit downloads ask once per file, so this saves a scan each.
_COMMITS: dict[tuple[int, str], int] = {}
_COMMITS_MAX = 50_000
_COMMITS_LOCK = threading.Lock()


def find_by_commit(session: Session, artifact: Artifact, commit: str) -> Version | None:
    """The committed version of ``artifact`` whose commit id is exactly ``commit``, or None."""
    if not is_commit_id(commit):
        return None
    with _COMMITS_LOCK:
        cached = _COMMITS.get((artifact.id, commit))
    if cached is not None:
        hit = session.get(Version, cached)
        if hit is not None and hit.artifact_id == artifact.id and hit.state == _COMMITTED \
                and version_commit_id(hit) == commit:
            return hit
    matches = commit_matches(session, artifact, commit)
    if len(matches) != 1:
        return None
    with _COMMITS_LOCK:
        if len(_COMMITS) >= _COMMITS_MAX:
            _COMMITS.clear()
        _COMMITS[(artifact.id, commit)] = matches[0]
    return session.get(Version, matches[0])
