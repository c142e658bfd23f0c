"""Tables of the artifacts domain. Changed only through migrations/."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from registry.core.tables import Base, UTCDateTime, utcnow


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
    """A movable pointer such as ``@prod`` or ``@latest``; or, with ``tag``, one that never moves once made."""

    __tablename__ = "aliases"

    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(200))
    # A tag (HF ``create_tag``): never moved or deleted, by any route (registry.artifacts.versions.move_alias).
    tag: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

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
