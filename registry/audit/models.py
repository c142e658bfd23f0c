"""Tables of the audit domain. Changed only through migrations/."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from registry.core.tables import Base, UTCDateTime, utcnow


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


class QueuedAuditEvent(Base):
    """An event recorded in a committed transaction and not yet given its leaf (registry.audit.sequencer).

    Appending to the log serialises on ``audit_state``; a change's own transaction only inserts here, so it
    never waits for that lock, and the sequencer moves every queued event into the log, in ``id`` order,
    in one transaction per batch. ``details`` is the RFC 8785 JSON of the event's details.
    """

    __tablename__ = "audit_queue"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    namespace: Mapped[str | None] = mapped_column(String(100))
    name: Mapped[str | None] = mapped_column(String(100))
    version: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[str] = mapped_column(Text)


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
