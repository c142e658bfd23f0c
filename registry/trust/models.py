"""Tables of the trust domain. Changed only through migrations/."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from registry.core.tables import Base, UTCDateTime, utcnow


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
