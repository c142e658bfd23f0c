"""Path and query parameters shared by the routers: each rule declared once, for the OpenAPI document and for
validation, so a malformed name is a 400 and an out-of-range number a 422, never a 500.

A name path parameter that breaks its pattern answers 400 ``invalid_name`` (``invalid_digest`` for digests),
as the ``checked_*`` helpers below do for names that arrive in bodies (see :mod:`registry.core.errors`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from registry.core.errors import ApiError
from registry.core.names import (
    ALIAS_MAX,
    ALIAS_PATTERN,
    SEGMENT_MAX,
    SEGMENT_PATTERN,
    VERSION_MAX,
    VERSION_PATTERN,
    InvalidNameError,
    validate_alias,
    validate_segment,
    validate_version,
)
from registry.core.tables import INT32_MAX
from registry.lineage.graph import CURSOR_PATTERN
from signing.digests import InvalidDigestError, validate_digest

SHA256_PATTERN = r"^sha256:[0-9a-f]{64}$"

Namespace = Annotated[str, Path(pattern=SEGMENT_PATTERN, max_length=SEGMENT_MAX, examples=["acme"])]
Name = Annotated[str, Path(pattern=SEGMENT_PATTERN, max_length=SEGMENT_MAX, examples=["sentiment-bert"])]
VersionName = Annotated[str, Path(pattern=VERSION_PATTERN, max_length=VERSION_MAX, examples=["1.2.0"])]
VersionRef = Annotated[
    str,
    Path(pattern=VERSION_PATTERN, max_length=VERSION_MAX, description="a version or an alias", examples=["latest"]),
]
AliasName = Annotated[
    str,
    Path(
        pattern=ALIAS_PATTERN, max_length=ALIAS_MAX, examples=["prod"],
        description="an alias; a new one may not be 40 hex digits, the shape of a commit id (400 reserved_name)",
    ),
]
BlobDigest = Annotated[str, Path(pattern=SHA256_PATTERN, max_length=71, description="sha256:<64 lowercase hex>")]
KeyId = Annotated[str, Path(pattern=r"^[0-9A-Fa-f]{1,128}$", max_length=128, description="hex key id")]
TokenId = Annotated[int, Path(ge=1, le=INT32_MAX)]
RowCursor = Annotated[int, Query(ge=0, le=INT32_MAX, description="cursor: the last id of the previous page")]
LineageCursor = Annotated[
    str | None, Query(pattern=CURSOR_PATTERN, max_length=40, description="the `next` of the previous page")
]
_SEG = SEGMENT_PATTERN.strip("^$")
NamespaceFilter = Annotated[
    str | None, Query(pattern=SEGMENT_PATTERN, max_length=SEGMENT_MAX, description="only this namespace")
]
ArtifactFilter = Annotated[
    str | None,
    Query(pattern=f"^{_SEG}/{_SEG}$", max_length=2 * SEGMENT_MAX + 1, description="namespace/name: only this artifact"),
]


def checked_repo(namespace: str, name: str) -> tuple[str, str]:
    try:
        return validate_segment(namespace, "namespace"), validate_segment(name, "name")
    except InvalidNameError as exc:
        raise ApiError(400, "invalid_name", str(exc)) from exc


def checked_version(version: str) -> str:
    try:
        return validate_version(version)
    except InvalidNameError as exc:
        raise ApiError(400, "invalid_name", str(exc)) from exc


def checked_alias(alias: str) -> str:
    try:
        return validate_alias(alias)
    except InvalidNameError as exc:
        raise ApiError(400, "invalid_name", str(exc)) from exc


def checked_digest(digest: str) -> str:
    try:
        value = validate_digest(digest)
    except InvalidDigestError as exc:
        raise ApiError(400, "invalid_digest", str(exc)) from exc
    if not value.startswith("sha256:"):
        raise ApiError(400, "invalid_digest", "blobs are addressed by sha256 digests")
    return value
