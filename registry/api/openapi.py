"""What the OpenAPI document says beyond the handlers' signatures: the error body, the error statuses every
``/v1`` route may answer, bearer authentication, and the response models of the main routes.

Schemathesis checks the running server against this document (``tests/e2e/test_openapi_fuzz.py``), so what
is declared here is what the server does.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

from registry.hf.errors import HfRoute
from registry.route_access import RULES, Need

BEARER = "bearer"


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


def include_options(router: APIRouter) -> dict[str, Any]:
    """How the app includes ``router``: ``/v1`` routers with the shared error responses; the Hugging Face routers
    left out of the document. They speak the Hub's protocol and error shape (``{"error": "..."}`` with an
    ``X-Error-Code`` header), which Hugging Face documents; leaving them out beats describing them wrongly."""
    if issubclass(router.route_class, HfRoute):
        return {"include_in_schema": False}
    return {"responses": ERROR_RESPONSES}


def _public_operations() -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route whose access rule needs no token."""
    return {(method.lower(), re.sub(r"\{(\w+):\w+\}", r"{\1}", path))
            for (method, path), need in RULES.items() if need is Need.PUBLIC}


def install_openapi(app: FastAPI) -> None:
    """Build the document once, with a bearer token required unless the route's access rule is public."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schema.setdefault("components", {})["securitySchemes"] = {
                BEARER: {"type": "http", "scheme": "bearer", "description": "an API token, `mir_...`"}
            }
            schema["security"] = [{BEARER: []}]
            public = _public_operations()
            for path, operations in schema["paths"].items():
                for method, operation in operations.items():
                    if (method, path) in public:
                        operation["security"] = []
                    for status, response in operation.get("responses", {}).items():
                        if status[0] in "45":  # errors are JSON, also where the success is a file
                            response["content"] = _ERROR_CONTENT
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
