"""Path-parameter validation shared by the routers: names become 400s, not 500s."""

from __future__ import annotations

from registry.errors import ApiError
from registry.names import InvalidNameError, validate_alias, validate_segment, validate_version
from signing.digests import InvalidDigestError, validate_digest


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
