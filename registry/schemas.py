"""Request bodies of the REST API (responses are plain dicts built in the services)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ManifestFile(_Strict):
    path: str
    size: int
    digest: str


class ManifestBody(_Strict):
    files: list[ManifestFile]


class OpenVersionRequest(_Strict):
    version: str
    kind: str = "model"
    manifest: ManifestBody
    description: str | None = Field(default=None, max_length=10_000)
    lineage: list[dict[str, Any]] = Field(default_factory=list)
    signatures: list[dict[str, Any]] = Field(default_factory=list)


class AliasRequest(_Strict):
    version: str
    reason: str | None = Field(default=None, max_length=2_000)


class TokenRequest(_Strict):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str]
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class RevokeRequest(_Strict):
    reason: str | None = Field(default=None, max_length=2_000)
