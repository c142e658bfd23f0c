"""Tables of the lineage domain. Changed only through migrations/."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from registry.core.tables import Base, UTCDateTime, utcnow


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
