"""SQLAlchemy models: the registry's schema. Changed only through migrations/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# The largest value an Integer (ids, counters, audit indexes) or BigInteger (sizes) column holds on PostgreSQL:
# numbers from the outside are bounded by these before they reach a query, or the driver fails with a 500.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as UTC and always returned timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC-aware values")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, list[dict[str, Any]]: JSON, datetime: UTCDateTime}


class ApiToken(Base):
    """An API token. Only the SHA-256 of the secret is stored; the secret is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(Text)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Artifact(Base):
    """A named thing in a namespace, e.g. ``acme/sentiment-bert`` of kind ``model``."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("namespace", "name", name="uq_artifacts_namespace_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200))

    versions: Mapped[list[Version]] = relationship(back_populates="artifact")


class Blob(Base):
    """File content stored once by digest; shared by every version that lists it."""

    __tablename__ = "blobs"

    digest: Mapped[str] = mapped_column(String(80), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    # BLAKE3 of the same bytes, computed while they streamed in: lets the verified loader check with BLAKE3.
    blake3: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when the stored bytes were found not to match the digest (or gone): never served again until repaired.
    corrupt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    corrupt_reason: Mapped[str | None] = mapped_column(Text)


class BlobChunks(Base):
    """The SHA-256 of every ``chunk_size`` chunk of a blob (32 bytes each, concatenated), recorded at upload.

    A Range response reads only the chunks it covers and checks each against this list before sending it.
    """

    __tablename__ = "blob_chunks"

    digest: Mapped[str] = mapped_column(String(80), ForeignKey("blobs.digest", ondelete="CASCADE"), primary_key=True)
    chunk_size: Mapped[int] = mapped_column(Integer)
    hashes: Mapped[bytes] = mapped_column(LargeBinary)


class NamespaceBlob(Base):
    """A namespace holds a blob: its bytes were sent under it, or mounted by someone who could read them.

    Storage is shared, but a push may only skip sending bytes that its namespace already holds; this table is
    what keeps deduplication from becoming a way to read another tenant's files.
    """

    __tablename__ = "namespace_blobs"

    namespace: Mapped[str] = mapped_column(String(100), primary_key=True)
    digest: Mapped[str] = mapped_column(String(80), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Version(Base):
    """One state of an artifact. ``open`` while uploading; ``committed`` is immutable."""

    __tablename__ = "versions"
    __table_args__ = (UniqueConstraint("artifact_id", "version", name="uq_versions_artifact_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"), index=True)
    version: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    manifest_digest: Mapped[str] = mapped_column(String(80))
    file_count: Mapped[int] = mapped_column(Integer)
    total_size: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200))
    committed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Aggregate scan verdict of the version's files: pending until a worker has scanned them all.
    scan_status: Mapped[str | None] = mapped_column(String(16))
    # Scanner version of the last finished scan: workers queue a rescan when the scanner is newer.
    scanner_version: Mapped[str | None] = mapped_column(String(32))

    artifact: Mapped[Artifact] = relationship(back_populates="versions")
    files: Mapped[list[VersionFile]] = relationship(
        back_populates="version", order_by="VersionFile.path", cascade="all, delete-orphan"
    )


class VersionFile(Base):
    """One manifest entry of a version."""

    __tablename__ = "version_files"
    __table_args__ = (Index("ix_version_files_digest", "digest"),)

    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(80))

    version: Mapped[Version] = relationship(back_populates="files")


class Alias(Base):
    """A movable pointer such as ``@prod`` or ``@latest``."""

    __tablename__ = "aliases"

    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(200))

    version: Mapped[Version] = relationship()


class AliasEvent(Base):
    """Every alias move, kept forever: which alias, from where, to where, by whom."""

    __tablename__ = "alias_events"
    __table_args__ = (Index("ix_alias_events_artifact_alias", "artifact_id", "alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(64))
    from_version_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id"))
    to_version_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)


class AuditEntry(Base):
    """One event of the append-only audit log; ``body`` is the exact RFC 8785 JSON the Merkle leaf hashes."""

    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_artifact", "namespace", "name", "leaf_index"),
        Index("ix_audit_entries_action", "action"),
    )

    leaf_index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    namespace: Mapped[str | None] = mapped_column(String(100))
    name: Mapped[str | None] = mapped_column(String(100))
    version: Mapped[str | None] = mapped_column(String(128))
    body: Mapped[str] = mapped_column(Text)
    leaf_hash: Mapped[str] = mapped_column(String(64))


class MerkleNode(Base):
    """A complete, perfect subtree hash of the audit tree: (level, index) covers leaves [index*2^level, ...)."""

    __tablename__ = "merkle_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditState(Base):
    """Single row holding the log size; appends lock it so leaf indexes never collide."""

    __tablename__ = "audit_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(Integer)


class SignedTreeHead(Base):
    """A tree head the registry signed: anyone holding it can demand consistency proofs later."""

    __tablename__ = "signed_tree_heads"

    tree_size: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    root_hash: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RegistryKey(Base):
    """The registry's own signing key; the private key is stored encrypted (PKCS#8 with a passphrase)."""

    __tablename__ = "registry_keys"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    algorithm: Mapped[str] = mapped_column(String(32))
    public_pem: Mapped[str] = mapped_column(Text)
    encrypted_private_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ExternalSource(Base):
    """A lineage parent outside the registry, pinned: a Hugging Face repo at a commit, a URL with a digest."""

    __tablename__ = "external_sources"
    __table_args__ = (UniqueConstraint("kind", "uri", "revision", name="uq_external_sources_identity"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    uri: Mapped[str] = mapped_column(String(2048))
    revision: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LineageEdge(Base):
    """``child -[type, attributes]-> parent`` where the parent is a version or an external source (never both).

    Edges are append-only: declared at push (``at_push``) they are part of the immutable version; added
    later they are audited. NULLs are distinct in unique indexes, so each unique constraint only binds
    the rows whose parent is of its kind.
    """

    __tablename__ = "lineage_edges"
    __table_args__ = (
        CheckConstraint(
            "(parent_version_id IS NULL) <> (parent_external_id IS NULL)", name="ck_lineage_edges_one_parent"
        ),
        UniqueConstraint("child_version_id", "parent_version_id", "type", name="uq_lineage_edges_child_version"),
        UniqueConstraint("child_version_id", "parent_external_id", "type", name="uq_lineage_edges_child_external"),
        Index("ix_lineage_edges_parent", "parent_version_id", "child_version_id"),
        Index("ix_lineage_edges_external", "parent_external_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    child_version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"))
    parent_version_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id"))
    parent_external_id: Mapped[int | None] = mapped_column(ForeignKey("external_sources.id"))
    type: Mapped[str] = mapped_column(String(32))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    origin: Mapped[str] = mapped_column(String(16))
    at_push: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200))


class Quarantine(Base):
    """An admin's quarantine of one version; every descendant is affected while it is not lifted."""

    __tablename__ = "quarantines"
    __table_args__ = (Index("ix_quarantines_version", "version_id", "lifted_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200))
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lifted_by: Mapped[str | None] = mapped_column(String(200))
    lift_reason: Mapped[str | None] = mapped_column(Text)


class TrustedKey(Base):
    """A public key a namespace trusts to sign artifacts matching ``artifact_pattern`` (a glob on the name)."""

    __tablename__ = "trusted_keys"
    __table_args__ = (UniqueConstraint("namespace", "key_id", name="uq_trusted_keys_namespace_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(100), index=True)
    key_id: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200))
    algorithm: Mapped[str] = mapped_column(String(32))
    public_pem: Mapped[str] = mapped_column(Text)
    artifact_pattern: Mapped[str] = mapped_column(String(200), default="*")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(Text)
    revoked_by: Mapped[str | None] = mapped_column(String(200))


class VersionSignature(Base):
    """A DSSE envelope over a version's manifest statement: a pusher's signature or the registry's countersignature."""

    __tablename__ = "version_signatures"
    __table_args__ = (UniqueConstraint("version_id", "key_id", "origin", name="uq_version_signatures_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[str] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(16))
    envelope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(200))


class ScanJob(Base):
    """Work for the scan workers: scan every blob of one committed version."""

    __tablename__ = "scan_jobs"
    __table_args__ = (Index("ix_scan_jobs_state", "state", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
    # A rescan re-runs the scanners on every blob; a commit's scan skips blobs that already have a result.
    rescan: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ScanResult(Base):
    """One scanner's report on one blob. Blobs are shared; rescans add rows, so the latest (highest id) wins
    and the older ones stay as history."""

    __tablename__ = "scan_results"
    __table_args__ = (Index("ix_scan_results_blob_scanner", "blob_digest", "scanner", "scanner_version", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    blob_digest: Mapped[str] = mapped_column(String(80), index=True)
    scanner: Mapped[str] = mapped_column(String(64))
    scanner_version: Mapped[str] = mapped_column(String(32))
    verdict: Mapped[str] = mapped_column(String(16))
    format: Mapped[str] = mapped_column(String(64))
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Policy(Base):
    """The rules a namespace's versions must meet to be loaded or deployed (JSON, see registry.policy)."""

    __tablename__ = "policies"

    namespace: Mapped[str] = mapped_column(String(100), primary_key=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(200))


class SyntheticFingerprint(Base):
    """One record of a dataset registered as synthetic (``generated_by``): hashes only, never text (issue 6).

    ``signature`` is the record's MinHash signature (``num_perm`` little-endian uint32) made with the
    default ``scanners.contamination.FingerprintConfig``; the worker rebuilds a ``FingerprintIndex``
    from these rows to match every dataset upload.
    """

    __tablename__ = "synthetic_fingerprints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), index=True)
    record_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    ordinal: Mapped[int] = mapped_column(Integer)
    generator_ref: Mapped[str] = mapped_column(String(400))


class ContaminationResult(Base):
    """The contamination step's outcome for one dataset version: fingerprint match and statistical estimate."""

    __tablename__ = "contamination_results"

    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True)
    verdict: Mapped[str] = mapped_column(String(16))
    total_records: Mapped[int | None] = mapped_column(BigInteger)
    indexed_records: Mapped[int | None] = mapped_column(BigInteger)
    matched_fraction: Mapped[float | None] = mapped_column(Float)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    statistical: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
