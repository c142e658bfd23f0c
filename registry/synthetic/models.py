"""Tables of the synthetic domain. Changed only through migrations/."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from registry.core.tables import Base, UTCDateTime, utcnow


class SyntheticFingerprint(Base):
    """One record of a dataset registered as synthetic (``generated_by``): hashes only, never text.

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
    # The record's passage sample: sorted little-endian uint64 shingle hashes (None: written before passages).
    passages: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


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


class CalibrationSample(Base):
    """The zero-shot detector's scores of one labelled dataset's calibration sample (registry.synthetic.calibration).

    A cache: a committed version's records never change, so its sample (drawn with a seed from its id) scores
    the same under the same model; ``model_key`` names the model, token limit and reading settings. ``role``
    is ``human`` or ``synthetic`` (what was sampled: every record, or only those registered as synthetic).
    ``scores`` holds one ``TextScore.to_row()`` per scored text; ``error`` says why a dataset gave none.
    """

    __tablename__ = "synthetic_calibration_samples"
    __table_args__ = (UniqueConstraint("version_id", "role", "model_key", name="uq_synthetic_calibration_samples"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    model_key: Mapped[str] = mapped_column(String(64))
    sampled: Mapped[int] = mapped_column(Integer)
    scores: Mapped[list[list[float]]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(String(400), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SyntheticEmbedding(Base):
    """One record of a dataset registered as synthetic, as a semantic vector (registry.synthetic.semantic).

    ``vector`` is the record's unit embedding, 256 little-endian float16 (512 bytes), never its text;
    ``model_key`` names the embedding model and pooling that made it (vectors of another model are never
    compared). Only records the fingerprint layer registers get one (not those found in human parents or
    marked human), when the optional layer is on.
    """

    __tablename__ = "synthetic_embeddings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id", ondelete="CASCADE"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    generator_ref: Mapped[str] = mapped_column(String(400))
    model_key: Mapped[str] = mapped_column(String(64))
    vector: Mapped[bytes] = mapped_column(LargeBinary)
