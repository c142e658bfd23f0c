"""HF commits become registry versions, through the same service functions as ``mir push``.

A commit (``POST /api/{type}s/{repo}/commit/{rev}``, NDJSON) is a list of
operations on top of a parent: add a file inline (base64), add an LFS file
already uploaded by sha256, delete a file or a folder. The registry applies them
to the parent version's manifest and then calls ``open_version`` and
``commit_version``, so an HF push gets exactly the checks, audit entries and
scan hooks of a ``mir push``.

Which version a commit creates, by the revision it targets:

- ``main`` (or ``latest``): a new version named ``hf-<UTC yyyymmdd.hhmmss>-<8 hex of
  the manifest digest>`` on top of ``main``; ``@latest`` moves to it (and the alias
  ``main`` too, if someone created one). A commit that changes nothing creates
  nothing and answers the current commit.
- a name that is not yet a version: a version with that name, on top of ``main``
  (``upload_folder(..., revision="1.2.0")`` publishes ``@1.2.0``).
- an existing version, another alias, or a commit id: refused; versions are
  immutable and other aliases move only with ``mir alias set``.

A new version built on a parent gets a ``derived_from`` lineage edge to it,
recorded by the registry (so a quarantine of the parent flags it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

import blake3
from sqlalchemy.orm import Session

from registry.artifacts.gc import hold_blobs_against_gc
from registry.artifacts.holdings import held_size, record_holding
from registry.artifacts.models import Artifact, Version
from registry.artifacts.uploads import store_bytes
from registry.artifacts.versions import (
    LATEST,
    find_alias,
    find_version,
    get_or_create_artifact,
    move_alias,
    open_version,
    record_blob,
)
from registry.core.blob_stores import BlobStore
from registry.core.chunks import chunk_list_of
from registry.core.names import InvalidNameError, validate_version
from registry.core.registry_key import RegistrySigner
from registry.core.schemas import LineageDeclaration
from registry.core.settings import Settings
from registry.core.tables import utcnow
from registry.hf.access import MAIN, RepoRef, find_revision, has_committed_version, version_commit
from registry.hf.errors import HfError, bad_request
from registry.hf.ids import SHA256_HEX, SHORT_COMMIT_ID, empty_commit_id
from registry.lineage.edges import record_edge
from registry.push.commit import commit_version as commit_registry_version
from signing.manifest import FileEntry, InvalidManifestError, Manifest
from signing.paths import InvalidPathError, validate_relative_path

OP_KEYS = ("file", "lfsFile", "deletedFile", "deletedFolder")
MAX_SUMMARY = 2_000
MAX_DESCRIPTION = 10_000


class CommitFormatError(ValueError):
    """A commit body that is not the NDJSON the HF client sends; the message names the line and the reason."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One line of a commit: ``key`` is one of OP_KEYS; ``content`` for inline files, ``oid``/``size`` for LFS."""

    key: str
    path: str
    content: bytes | None = None
    oid: str | None = None
    size: int | None = None

    @property
    def digest(self) -> str | None:
        if self.content is not None:
            return "sha256:" + hashlib.sha256(self.content).hexdigest()
        return f"sha256:{self.oid}" if self.oid is not None else None


@dataclass(frozen=True, slots=True)
class CommitRequest:
    summary: str
    description: str
    parent_commit: str | None
    operations: tuple[Operation, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class CommitResult:
    commit: str
    version: str
    created: bool


# -- parsing ------------------------------------------------------------------------------------------


def _lines(body: bytes) -> Iterator[tuple[int, dict[str, object]]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommitFormatError(f"commit body is not UTF-8 (byte {exc.start})") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise CommitFormatError(f"line {number}: not JSON ({exc})") from exc
        if not (isinstance(item, dict) and isinstance(item.get("key"), str) and isinstance(item.get("value"), dict)):
            raise CommitFormatError(f"line {number}: expected an object with 'key' and an object 'value'")
        yield number, item


def _text(value: dict[str, object], key: str, number: int, *, required: bool = True, limit: int = 1 << 20) -> str:
    raw = value.get(key)
    if raw is None and not required:
        return ""
    if not isinstance(raw, str):
        raise CommitFormatError(f"line {number}: '{key}' must be a string")
    if len(raw) > limit:
        raise CommitFormatError(f"line {number}: '{key}' is longer than {limit} characters")
    try:
        raw.encode("utf-8")  # JSON admits lone surrogates (\ud800); no database or audit entry can hold one
    except UnicodeEncodeError as exc:
        raise CommitFormatError(f"line {number}: '{key}' is not valid Unicode text (lone surrogate)") from exc
    return raw


def _path(value: dict[str, object], number: int, *, folder: bool = False) -> str:
    path = _text(value, "path", number, limit=4096)
    if folder:
        path = path.rstrip("/")
    try:
        return validate_relative_path(path)
    except InvalidPathError as exc:
        raise CommitFormatError(f"line {number}: {exc}") from exc


def _operation(key: str, value: dict[str, object], number: int) -> Operation:
    if key == "file":
        path = _path(value, number)
        if value.get("encoding", "base64") != "base64":
            raise CommitFormatError(f"line {number}: {path}: only base64 'encoding' is supported")
        content = _text(value, "content", number, limit=1 << 30)
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CommitFormatError(f"line {number}: {path}: content is not valid base64") from exc
        return Operation(key, path, content=data)
    if key == "lfsFile":
        path = _path(value, number)
        if value.get("algo", "sha256") != "sha256":
            raise CommitFormatError(f"line {number}: {path}: only sha256 LFS objects are supported")
        oid = value.get("oid")
        if not isinstance(oid, str) or not SHA256_HEX.fullmatch(oid):
            raise CommitFormatError(f"line {number}: {path}: 'oid' must be 64 lowercase hex digits")
        size = value.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise CommitFormatError(f"line {number}: {path}: 'size' must be a non-negative integer")
        return Operation(key, path, oid=oid, size=size)
    if key in ("deletedFile", "deletedFolder"):
        return Operation(key, _path(value, number, folder=key == "deletedFolder"))
    raise CommitFormatError(f"line {number}: unknown operation {key[:40]!r}; expected header, {', '.join(OP_KEYS)}")


def parse_commit(body: bytes, *, max_operations: int = 100_000) -> CommitRequest:
    """Parse and validate an NDJSON commit body (header line plus one operation per line)."""
    header: dict[str, object] | None = None
    operations: list[Operation] = []
    for number, item in _lines(body):
        key, value = str(item["key"]), item["value"]
        assert isinstance(value, dict)
        if key == "header":
            if header is not None:
                raise CommitFormatError(f"line {number}: a second header")
            header = value
            continue
        operations.append(_operation(key, value, number))
        if len(operations) > max_operations:
            raise CommitFormatError(f"more than {max_operations} operations in one commit")
    if header is None:
        raise CommitFormatError("the commit has no header line")
    parent = header.get("parentCommit")
    if parent is not None and (not isinstance(parent, str) or not SHORT_COMMIT_ID.fullmatch(parent)):
        raise CommitFormatError("header: 'parentCommit' must be 7 to 40 lowercase hex digits")
    return CommitRequest(
        summary=_text(header, "summary", 0, required=False, limit=MAX_SUMMARY),
        description=_text(header, "description", 0, required=False, limit=MAX_DESCRIPTION),
        parent_commit=parent,
        operations=tuple(operations),
    )


# -- targets ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where a commit lands: the version it builds on, and the new version's name (None: generate one)."""

    parent: Version | None
    version_name: str | None
    move_main_alias: bool


def plan_target(session: Session, ref: RepoRef, artifact: Artifact | None, revision: str) -> Target:
    """Decide which version an HF commit to ``revision`` creates (see the module docstring)."""
    main = find_revision(session, ref, artifact, MAIN) if artifact is not None else None
    if revision in (MAIN, LATEST):
        moves_main = artifact is not None and find_alias(session, artifact, MAIN) is not None
        return Target(main, None, moves_main)
    try:
        validate_version(revision)
    except InvalidNameError as exc:
        raise bad_request(f"cannot push to revision {revision!r}: {exc}") from exc
    if artifact is not None:
        existing = find_version(session, artifact, revision)
        if existing is not None and existing.state == "committed":
            raise HfError(
                409, "VersionExists",
                f"{ref.repo}@{revision} is already committed and versions are immutable; "
                "push to main or to a new version name",
            )
        if find_alias(session, artifact, revision) is not None:
            raise HfError(
                409, "AliasNotPushable",
                f"{revision!r} is an alias of {ref.repo}; HF pushes only move main (use `mir alias set` for others)",
            )
        if existing is None and SHORT_COMMIT_ID.fullmatch(revision) and find_revision(
            session, ref, artifact, revision
        ) is not None:
            raise bad_request(f"{revision!r} is a commit id of {ref.repo}; commits are immutable")
    return Target(main, revision, False)


def auto_version_name(now: datetime, manifest_digest: str, taken: Callable[[str], bool]) -> str:
    """``hf-20260122.101530-1a2b3c4d``: sortable by time, tied to the content, unique in the artifact."""
    base = f"hf-{now:%Y%m%d.%H%M%S}-{manifest_digest.rpartition(':')[2][:8]}"
    name, n = base, 1
    while taken(name):
        n += 1
        name = f"{base}-{n}"
    return name


# -- applying -----------------------------------------------------------------------------------------


def store_inline(blobs: BlobStore, operations: tuple[Operation, ...], *, only_missing: bool = False) -> None:
    """Write inline file contents to the blob store (content-addressed, atomic); before any DB transaction.

    Every content is written, even one the store already has: skipping it would answer faster when another
    namespace stored the same bytes, which tells a tenant holding a file whether someone else does. Under the
    commit's lock (``only_missing``) the contents were just written, so only one garbage-collected in between
    is written back.
    """
    for op in operations:
        if op.content is None:
            continue
        digest = op.digest
        assert digest is not None
        if only_missing and blobs.exists(digest, len(op.content)):
            continue
        store_bytes(blobs, digest, op.content)


def apply_operations(
    base: dict[str, FileEntry], operations: tuple[Operation, ...], lfs_size: Callable[[str], int | None]
) -> list[FileEntry]:
    """The file list after applying ``operations`` in order to ``base`` (path -> entry)."""
    files = dict(base)
    for op in operations:
        if op.key == "file":
            assert op.content is not None and op.digest is not None
            files[op.path] = FileEntry(op.path, len(op.content), op.digest)
        elif op.key == "lfsFile":
            assert op.digest is not None
            size = op.size if op.size is not None else lfs_size(op.digest)
            if size is None:
                raise HfError(
                    404, "EntryNotFound", f"LFS object {op.oid} for {op.path} has not been uploaded to this registry"
                )
            files[op.path] = FileEntry(op.path, size, op.digest)
        elif op.key == "deletedFile":
            if files.pop(op.path, None) is None:
                raise HfError(404, "EntryNotFound", f"A file with this name doesn't exist: {op.path}")
        else:
            doomed = [p for p in files if p.startswith(op.path + "/")]
            if not doomed:
                raise HfError(404, "EntryNotFound", f"A folder with this name doesn't exist: {op.path}")
            for p in doomed:
                del files[p]
    return list(files.values())


def _check_limits(manifest: Manifest, settings: Settings) -> None:
    """The limits the ``/v1`` open-version route enforces, applied to HF commits too."""
    if len(manifest.files) > settings.max_manifest_files:
        raise HfError(413, "ManifestTooLarge", f"at most {settings.max_manifest_files} files per version")
    for entry in manifest.files:
        if entry.size > settings.max_blob_size:
            raise HfError(413, "BlobTooLarge", f"{entry.path} is larger than the registry's blob limit")


def commit(
    session: Session,
    blobs: BlobStore,
    settings: Settings,
    ref: RepoRef,
    revision: str,
    request: CommitRequest,
    *,
    actor: str,
    signer: RegistrySigner | None = None,
) -> CommitResult:
    """Create (and commit) the version an HF commit describes, in the caller's transaction."""
    artifact = get_or_create_artifact(session, ref.namespace, ref.name, ref.kind, actor)
    target = plan_target(session, ref, artifact, revision)
    parent = target.parent
    head = version_commit(ref, parent) if parent is not None else None
    # An empty repo's head is its empty commit id (what repo info reported), so a client may build on it.
    expected = head or (empty_commit_id(ref.repo) if not has_committed_version(session, artifact) else None)
    if request.parent_commit is not None and (expected is None or not expected.startswith(request.parent_commit)):
        raise HfError(
            412, "ParentCommitMismatch",
            f"parent commit {request.parent_commit} is not the head of main ({head or 'empty repo'}); "
            "someone pushed in between: fetch and retry",
        )
    inline = [op for op in request.operations if op.content is not None and op.digest is not None]
    # Written before this transaction; a garbage collection in between may have taken bytes that were stored
    # before and unreferenced. Under the lock nothing can, so write back whatever is gone.
    hold_blobs_against_gc(session)
    store_inline(blobs, tuple(inline), only_missing=True)
    for op in inline:
        assert op.content is not None and op.digest is not None
        record_blob(session, op.digest, len(op.content), "blake3:" + blake3.blake3(op.content).hexdigest(),
                    chunk_list_of(op.content))
    record_holding(session, ref.namespace, [op.digest for op in inline if op.digest is not None])
    base = {f.path: FileEntry(f.path, f.size, f.digest) for f in parent.files} if parent is not None else {}

    def lfs_size(digest: str) -> int | None:
        return held_size(session, ref.namespace, digest)

    try:
        manifest = Manifest.from_entries(apply_operations(base, request.operations, lfs_size)).check_portable()
    except InvalidManifestError as exc:
        raise bad_request(f"the commit leaves an invalid file list: {exc}") from exc
    if not manifest.files:
        raise bad_request("the commit leaves no files; a version needs at least one")
    _check_limits(manifest, settings)
    if target.version_name is None and parent is not None and manifest.digest() == parent.manifest_digest:
        assert head is not None
        return CommitResult(head, parent.version, created=False)
    name = target.version_name or auto_version_name(
        utcnow(), manifest.digest(), lambda n: find_version(session, artifact, n) is not None
    )
    description = "\n\n".join(part for part in (request.summary, request.description) if part) or None
    version, _resumed = open_version(session, blobs, artifact, name, manifest, actor=actor, description=description)
    commit_registry_version(session, blobs, version, actor=actor, signer=signer)
    if parent is not None:
        # The commit is a delta on the parent: the registry knows the new version derives from it.
        edge = {"type": "derived_from", "parent": {"ref": f"{ref.repo}@{parent.version}"},
                "attributes": {"via": "hf_commit", "parent_commit": head}}
        record_edge(session, version, LineageDeclaration.model_validate(edge), actor=actor)
    if target.move_main_alias:
        move_alias(session, artifact, MAIN, version, actor=actor, reason="hf push to main")
    return CommitResult(version_commit(ref, version), version.version, created=True)
