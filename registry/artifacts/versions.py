"""Artifacts, versions and aliases: open, resume, commit, resolve, move.

This module holds the rules; the HTTP routers only translate. Every function
runs inside a caller's transaction so a failure leaves nothing half-done.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from registry.artifacts import integrity as blob_integrity
from registry.artifacts.commit_ids import find_by_commit, is_commit_id
from registry.artifacts.holdings import held_by
from registry.artifacts.models import Alias, AliasEvent, Artifact, Blob, Version, VersionFile
from registry.audit import log as audit
from registry.core.blob_stores import BlobStore
from registry.core.chunks import ChunkList
from registry.core.db import batches, insert_new_object, insert_new_rows
from registry.core.errors import ApiError, not_found
from registry.core.names import InvalidNameError, ReservedNameError, validate_new_alias, validate_new_version
from registry.core.tables import utcnow
from signing.manifest import Manifest

OPEN = "open"
COMMITTED = "committed"
LATEST = "latest"


def version_label(version: Version) -> str:
    """``namespace/name@version``: how messages and audit details name a version."""
    return f"{version.artifact.namespace}/{version.artifact.name}@{version.version}"


def record_version_event(
    session: Session, version: Version, *, action: str, actor: str, details: dict[str, Any]
) -> None:
    """Record an audit event about ``version`` (its artifact and version filled in from the row)."""
    audit.record(
        session, action=action, actor=actor, namespace=version.artifact.namespace, name=version.artifact.name,
        version=version.version, details=details,
    )


# Built once: a statement built per call spends as much CPU on its cache key as on its execution.
_ARTIFACT_BY_NAME = select(Artifact).where(Artifact.namespace == bindparam("namespace"),
                                           Artifact.name == bindparam("name"))
_VERSION_BY_NAME = select(Version).where(Version.artifact_id == bindparam("artifact_id"),
                                         Version.version == bindparam("version"))


def find_artifact(session: Session, namespace: str, name: str) -> Artifact | None:
    return session.scalar(_ARTIFACT_BY_NAME, {"namespace": namespace, "name": name})


def get_artifact(session: Session, namespace: str, name: str) -> Artifact:
    artifact = find_artifact(session, namespace, name)
    if artifact is None:
        raise not_found(f"artifact {namespace}/{name}", "artifact_not_found")
    return artifact


def get_or_create_artifact(session: Session, namespace: str, name: str, kind: str, actor: str) -> Artifact:
    artifact = find_artifact(session, namespace, name)
    if artifact is None:
        artifact = Artifact(namespace=namespace, name=name, kind=kind, created_by=actor)
        try:
            with session.begin_nested():
                session.add(artifact)
        except IntegrityError:
            artifact = get_artifact(session, namespace, name)
    if artifact.kind != kind:
        raise ApiError(
            409, "kind_mismatch", f"{namespace}/{name} is a {artifact.kind}, not a {kind}; pick another name"
        )
    return artifact


def find_version(session: Session, artifact: Artifact, version: str) -> Version | None:
    return session.scalar(_VERSION_BY_NAME, {"artifact_id": artifact.id, "version": version})


def find_alias(session: Session, artifact: Artifact, alias: str) -> Alias | None:
    return session.get(Alias, (artifact.id, alias))


def find_exact_version(session: Session, artifact: Artifact, ref: str) -> Version | None:
    """The version ``ref`` names exactly (never through an alias): a full commit id, else a version name.

    A commit id is tried first, as on the HF endpoint, so ``ns/name@<commit>`` means the same bytes everywhere:
    new versions and aliases may not take 40-hex names, and a row that predates that rule and is named like
    another version's commit id cannot shadow it. A 40-hex name that is no version's commit id still finds
    the version of that name.
    """
    if is_commit_id(ref):
        by_commit = find_by_commit(session, artifact, ref)
        if by_commit is not None:
            return by_commit
    return find_version(session, artifact, ref)


def find_by_ref(session: Session, artifact: Artifact, ref: str) -> Version | None:
    """The version a reference names, in any state: commit id, version name, then alias."""
    version = find_exact_version(session, artifact, ref)
    if version is None:
        alias = find_alias(session, artifact, ref)
        version = alias.version if alias is not None else None
    return version


def resolve_ref(session: Session, artifact: Artifact, ref: str | None) -> Version:
    """A committed version by commit id, exact version name, else alias; ``None`` means ``@latest``.

    Every ``/v1`` route that reads a version by reference resolves it here (see :func:`find_exact_version`).
    """
    ref = ref or LATEST
    version = find_by_ref(session, artifact, ref)
    if version is None or version.state != COMMITTED:
        raise not_found(f"version or alias {artifact.namespace}/{artifact.name}@{ref}", "version_not_found")
    return version


def missing_digests(
    session: Session, blobs: BlobStore, manifest: Manifest, namespace: str, held_here: Collection[str] = ()
) -> list[str]:
    """Digests of the manifest that ``namespace`` does not hold yet (deduplicated, sorted).

    ``held_here``: digests this transaction has already found held by ``namespace`` and present in the store
    (an open that stored or found every blob): they are not looked up again.
    """
    wanted = {f.digest: f.size for f in manifest.files}
    unchecked = {d: size for d, size in wanted.items() if d not in held_here}
    held = held_by(session, blobs, namespace, unchecked) if unchecked else set()
    held.update(d for d in wanted if d in held_here)
    return sorted(d for d in wanted if d not in held)


def version_manifest(version: Version) -> Manifest:
    from signing.manifest import FileEntry

    return Manifest.from_entries(FileEntry(f.path, f.size, f.digest) for f in version.files)


def check_one_size_per_digest(manifest: Manifest) -> None:
    """One digest names one content, of one size: a manifest listing it at two sizes is refused (400).

    A second size would let a version declare a shared blob at a length it does not have; serving that path
    would find the stored file "the wrong size". Every push (``/v1`` and HF commits) opens through here.
    """
    sizes: dict[str, int] = {}
    for entry in manifest.files:
        if sizes.setdefault(entry.digest, entry.size) != entry.size:
            raise ApiError(400, "invalid_manifest", f"{entry.path}: {entry.digest} is listed with sizes "
                           f"{sizes[entry.digest]} and {entry.size}; one digest has one size")


def open_version(
    session: Session,
    blobs: BlobStore,
    artifact: Artifact,
    version_name: str,
    manifest: Manifest,
    *,
    actor: str,
    description: str | None = None,
) -> tuple[Version, bool]:
    """Open (or resume) an upload of ``version_name``. Returns the version and whether it was resumed."""
    check_one_size_per_digest(manifest)
    existing = find_version(session, artifact, version_name)
    if existing is None:
        _check_new_name(validate_new_version, version_name)
    if find_alias(session, artifact, version_name) is not None:
        raise ApiError(409, "name_taken", f"{version_name!r} is an alias of {artifact.namespace}/{artifact.name}")
    if existing is not None:
        return _resume(existing, manifest), True
    version = insert_new_object(session, Version, {
        "artifact_id": artifact.id, "version": version_name, "state": OPEN, "manifest_digest": manifest.digest(),
        "file_count": len(manifest.files), "total_size": manifest.total_size, "description": description,
        "created_by": actor,
    })
    if version is None:
        # Another push opened the same version a moment ago: treat as a resume.
        raced = find_version(session, artifact, version_name)
        if raced is None:
            raise RuntimeError(f"{artifact.namespace}/{artifact.name}@{version_name} conflicted but is not there")
        return _resume(raced, manifest), True
    rows = [{"version_id": version.id, "path": f.path, "size": f.size, "digest": f.digest} for f in manifest.files]
    files = session.scalars(  # none for an empty manifest: an INSERT of no rows would be one of DEFAULT VALUES
        insert(VersionFile).returning(VersionFile, sort_by_parameter_order=True), rows
    ).all() if rows else []
    set_committed_value(version, "files", sorted(files, key=lambda f: f.path))  # as the relationship orders them
    audit.record(
        session, action="version.opened", actor=actor, namespace=artifact.namespace, name=artifact.name,
        version=version_name, details={"manifest_digest": version.manifest_digest, "kind": artifact.kind},
    )
    return version, False


def _check_new_name(rule: Callable[[str], str], name: str) -> None:
    """A version or alias about to be created: 400 ``reserved_name`` for a name kept for aliases or commit
    ids (checked here, where every route that creates names passes, not only in the routes)."""
    try:
        rule(name)
    except ReservedNameError as exc:
        raise ApiError(400, "reserved_name", str(exc)) from exc
    except InvalidNameError as exc:
        raise ApiError(400, "invalid_name", str(exc)) from exc


def _resume(existing: Version, manifest: Manifest) -> Version:
    """The version a repeated open continues. A committed version with the same manifest is returned as it is:
    the retry of a push whose commit answer was lost must end where the first attempt did."""
    label = f"{existing.artifact.namespace}/{existing.artifact.name}@{existing.version}"
    if existing.state == COMMITTED and existing.manifest_digest != manifest.digest():
        raise ApiError(409, "version_exists", f"{label} is already committed; versions are immutable")
    if existing.manifest_digest != manifest.digest():
        raise ApiError(
            409,
            "open_version_conflict",
            f"{label} is already open with a different manifest; abort it first (DELETE) to start over",
        )
    return existing


class BlobRecord(NamedTuple):
    """A blob whose bytes were just stored and hashed: what its row and chunk list record."""

    digest: str
    size: int
    blake3: str | None = None
    chunks: ChunkList | None = None


def record_blob(
    session: Session, digest: str, size: int, blake3: str | None = None, chunks: ChunkList | None = None
) -> None:
    """Insert the blob row if absent (idempotent under concurrent uploads); fill in a missing BLAKE3 digest
    and chunk list (what lets Range responses be checked)."""
    record_blobs(session, [BlobRecord(digest, size, blake3, chunks)])


def record_blobs(session: Session, blobs: Sequence[BlobRecord]) -> set[str]:
    """:func:`record_blob` for many blobs in a constant number of statements (a push of many small files);
    returns the digests whose rows this inserted (new blobs: nothing of theirs was recorded before)."""
    inserted: set[str] = set()
    for part in batches(blobs):
        new = insert_new_rows(session, Blob, [{"digest": b.digest, "size": b.size, "blake3": b.blake3} for b in part],
                              "digest")
        inserted |= new
        hashed = [{"d": b.digest, "b3": b.blake3} for b in part if b.blake3 is not None and b.digest not in new]
        if hashed:  # rows recorded before BLAKE3 digests were kept
            table = Blob.__table__
            assert isinstance(table, Table)
            session.connection().execute(  # Core executemany: one round trip per statement batch
                update(table).where(table.c.digest == bindparam("d"), table.c.blake3.is_(None))
                .values(blake3=bindparam("b3")),
                hashed,
            )
        blob_integrity.record_chunk_lists(session, [(b.digest, b.chunks) for b in part if b.chunks is not None])
    return inserted


def abort_version(session: Session, version: Version, *, actor: str) -> None:
    if version.state == COMMITTED:
        raise ApiError(409, "version_exists", "committed versions cannot be deleted")
    record_version_event(session, version, action="version.aborted", actor=actor,
        details={"manifest_digest": version.manifest_digest})
    session.delete(version)


def move_alias(
    session: Session,
    artifact: Artifact,
    alias_name: str,
    version: Version | None,
    *,
    actor: str,
    reason: str | None = None,
    tag: bool = False,
) -> AliasEvent | None:
    """Point (or, with ``version=None``, remove) an alias, recording the move. No-op moves are not recorded.

    ``tag=True`` creates a tag: an alias that never moves and is never deleted once made (what a git tag is
    to HF clients). Creating one refuses an existing alias; moving or deleting one is refused here, so no
    route (``/v1`` or HF) can change a tag.
    """
    if tag and version is None:
        raise ValueError("a tag is created pointing at a version")
    # With the version it points at, for the audit entry's ``from``: one query where there were two.
    alias = session.get(Alias, (artifact.id, alias_name), options=[joinedload(Alias.version)])
    label = f"{artifact.namespace}/{artifact.name}@{alias_name}"
    if tag and alias is not None:
        raise ApiError(409, "alias_exists", f"{label} already exists as {'a tag' if alias.tag else 'an alias'}")
    before = alias.version_id if alias is not None else None
    old = alias.version if alias is not None else None
    after = version.id if version is not None else None
    if before == after:
        return None
    if alias is not None and alias.tag:
        raise ApiError(
            409, "alias_immutable",
            f"{label} is a tag: tags never move and are never deleted; make a new tag, or use a movable alias",
        )
    if version is not None:
        if version.state != COMMITTED:
            raise ApiError(409, "version_not_committed", "aliases can only point to committed versions")
        if alias is None:
            _check_new_name(validate_new_alias, alias_name)
            if find_version(session, artifact, alias_name) is not None:
                raise ApiError(409, "name_taken", f"{alias_name!r} is a version of {artifact.namespace}/"
                               f"{artifact.name}, not usable as alias")
            try:  # a request making the same name at the same moment wins; this one is told so, not a 500
                with session.begin_nested():
                    session.add(Alias(artifact_id=artifact.id, name=alias_name, version_id=version.id,
                                      updated_by=actor, tag=tag))
            except IntegrityError as exc:
                raise ApiError(409, "alias_exists", f"{label} was just created by another request") from exc
        else:
            alias.version = version  # the relationship, not only its key: it is loaded, and read later
            alias.updated_at = utcnow()
            alias.updated_by = actor
    elif alias is not None:
        session.delete(alias)
    event = AliasEvent(
        artifact_id=artifact.id,
        alias=alias_name,
        from_version_id=before,
        to_version_id=after,
        actor=actor,
        reason=reason,
    )
    session.add(event)
    session.flush()
    audit.record(
        session, action="alias.moved", actor=actor, namespace=artifact.namespace, name=artifact.name,
        version=version.version if version is not None else None,
        details={"alias": alias_name, "from": old.version if old is not None else None,
                 "to": version.version if version is not None else None,
                 "manifest_digest": version.manifest_digest if version is not None else None, "reason": reason,
                 **({"tag": True} if tag else {})},
    )
    return event


def aliases_of(session: Session, artifact: Artifact) -> dict[str, str]:
    rows = session.execute(
        select(Alias.name, Version.version)
        .join(Version, Version.id == Alias.version_id)
        .where(Alias.artifact_id == artifact.id)
        .order_by(Alias.name)
    )
    return {name: ver for name, ver in rows}


def version_to_dict(version: Version, *, with_files: bool = True, aliases: Iterable[str] = ()) -> dict[str, Any]:
    artifact = version.artifact
    data: dict[str, Any] = {
        "artifact": f"{artifact.namespace}/{artifact.name}",
        "kind": artifact.kind,
        "version": version.version,
        "state": version.state,
        "manifest_digest": version.manifest_digest,
        "file_count": version.file_count,
        "total_size": version.total_size,
        "description": version.description,
        "created_at": version.created_at.isoformat() if version.created_at else None,
        "created_by": version.created_by,
        "committed_at": version.committed_at.isoformat() if version.committed_at else None,
        "scan_status": version.scan_status,
        "aliases": sorted(aliases),
    }
    if with_files:
        data["files"] = [{"path": f.path, "size": f.size, "digest": f.digest} for f in version.files]
    return data
