"""The ``/v1`` answers as the OpenAPI document describes them: the error body, the error statuses every route
may answer, and the response models of the main routes.

Schemathesis checks the running server against this document (``tests/e2e/test_openapi_fuzz.py``), so what
is declared here is what the server does. The document itself is assembled by :mod:`registry.server.openapi`.
"""

from __future__ import annotations

from typing import Any

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    """A stable machine ``code`` and a human ``message``; some errors add fields (``missing``, ...)."""

    model_config = ConfigDict(extra="allow")
    code: str = Field(examples=["invalid_name"])
    message: str = Field(examples=["invalid namespace '-x': use 1-100 letters, digits, '.', '_' or '-', ..."])


class ErrorBody(BaseModel):
    """Every ``/v1`` error: ``{"error": {"code": ..., "message": ...}}``."""

    error: ErrorDetail


_ERRORS = {
    400: "Malformed input: a name, digest, path, manifest or body that breaks the rules",
    401: "No token, or an unknown, revoked or expired one",
    403: "The token lacks the scope this needs, or the version is quarantined",
    404: "No such artifact, version, alias, file or key (or none the token may see)",
    409: "Conflicts with what is stored: an existing version, name or signature",
    413: "Body, manifest or declared size over the registry's limits",
    422: "The request does not match this document (types, bounds, required fields)",
    507: "The registry's storage is full; nothing was stored",
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text} for status, text in _ERRORS.items()
}
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
BINARY: dict[str, Any] = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


class BinaryResponse(Response):
    """File bytes: the ``response_class`` that documents a download as ``application/octet-stream``."""

    media_type = "application/octet-stream"


class Health(BaseModel):
    status: str
    version: str


class WhoAmI(BaseModel):
    name: str
    token_id: int
    scopes: list[str]


class TokenInfo(BaseModel):
    """A token as listed: never its secret."""

    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: str
    created_by: str | None
    expires_at: str | None
    revoked_at: str | None
    revoked_reason: str | None
    last_used_at: str | None


class TokenCreated(TokenInfo):
    token: str = Field(description="the secret, shown once")


class RegistryKey(BaseModel):
    key_id: str
    algorithm: str
    public_key: str
    log_id: str


class ArtifactSummary(BaseModel):
    artifact: str
    kind: str
    aliases: dict[str, str]


class ArtifactPage(BaseModel):
    items: list[ArtifactSummary]
    next: int | None = Field(description="pass as ``after`` for the next page; null on the last one")


class AliasMoved(BaseModel):
    alias: str
    version: str
    moved: bool


class BlobStored(BaseModel):
    digest: str
    size: int
    stored: str = Field(description="``new`` or ``already``")
