"""Request bodies of the REST API (responses are plain dicts built in the services)."""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from registry.core.names import KINDS, VERSION_MAX, VERSION_PATTERN
from registry.core.parent_specs import EdgeType
from signing.digests import InvalidDigestError, validate_digest

# Documented here, checked by the routes with the naming rule's own message (400 ``invalid_name``).
VERSION_NAME: dict[str, Any] = {"pattern": VERSION_PATTERN, "maxLength": VERSION_MAX, "examples": ["1.2.0"]}


class _Strict(BaseModel):
    """Unknown fields and type coercion are refused: ``"size": "1"`` or ``true`` is a client bug, not a size."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ManifestFile(_Strict):
    path: str
    size: int
    digest: str


class ManifestBody(_Strict):
    files: list[ManifestFile]


class OpenVersionRequest(_Strict):
    version: str = Field(
        json_schema_extra=VERSION_NAME,
        description="the new version's name; `latest`, `main` and 40 hex digits (a commit id's shape) are reserved "
        "(400 reserved_name)",
    )
    kind: str = Field(default="model", json_schema_extra={"enum": list(KINDS)})
    manifest: ManifestBody
    description: str | None = Field(default=None, max_length=10_000)
    # Each item is a LineageDeclaration; validated by registry.lineage so a bad one is a 400 naming its index.
    lineage: list[dict[str, Any]] = Field(default_factory=list, max_length=1000)
    signatures: list[dict[str, Any]] = Field(default_factory=list)
    inline: dict[str, str] = Field(
        default_factory=dict, max_length=1000,
        description="small files' contents by digest, base64: checked and stored like uploads, so they need no "
        "upload request (at most MIR_MAX_INLINE_PUSH_BYTES decoded, 8 MiB by default)",
    )
    commit: bool = Field(
        default=False,
        description="commit at once when no blob is missing after the inline contents: a small version's whole "
        "push in one request (the answer then holds the committed version and `committed: true`)",
    )


class AliasRequest(_Strict):
    version: str = Field(json_schema_extra=VERSION_NAME)
    reason: str | None = Field(default=None, max_length=2_000)
    override_quarantine: bool = Field(default=False, description="admin only, audited: alias a quarantined version")


class TokenRequest(_Strict):
    name: str = Field(min_length=1, max_length=200)
    scopes: list[str]
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class RevokeRequest(_Strict):
    reason: str | None = Field(default=None, max_length=2_000)


# -- lineage declarations -------------------------------------------------------------------------------------

MAX_ATTRIBUTES = 32
MAX_ATTRIBUTES_BYTES = 4096
MAX_ATTRIBUTE_STRING = 1000
MAX_ATTRIBUTE_LIST = 100
MAX_SAFE_INTEGER = 2**53 - 1
_ATTRIBUTE_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_HF_SEGMENT = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_HF_REPO = re.compile(rf"^(?:{_HF_SEGMENT}/)?{_HF_SEGMENT}$")
_HF_COMMIT = re.compile(r"^[0-9a-f]{40}$")
URL_SCHEMES = ("https", "http", "s3", "gs")


class HuggingFaceSource(_Strict):
    """A Hugging Face Hub repository pinned to a commit (a branch name would move under us)."""

    kind: Literal["huggingface"]
    repo: str = Field(max_length=200, description="org/name, e.g. meta-llama/Llama-3.1-8B")
    revision: str = Field(description="the full 40-hex commit sha")
    repo_type: Literal["model", "dataset", "space"] = "model"

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str) -> str:
        if not _HF_REPO.match(value) or ".." in value or "--" in value:
            raise ValueError(f"invalid Hugging Face repo id {value[:100]!r}: expected org/name")
        return value

    @field_validator("revision")
    @classmethod
    def _revision(cls, value: str) -> str:
        if not _HF_COMMIT.match(value):
            raise ValueError(
                f"revision {value[:60]!r} is not a commit: pin the full 40-hex sha, not a branch or tag"
            )
        return value


class UrlSource(_Strict):
    """Content at a URL, pinned by the digest of what was fetched."""

    kind: Literal["url"]
    url: str = Field(max_length=2048)
    digest: str = Field(description="sha256:<64 hex> or blake3:<64 hex> of the content")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.isascii() or not value.isprintable() or " " in value:
            raise ValueError("url must be printable ASCII without spaces (percent-encode the rest)")
        parts = urlsplit(value)
        if parts.scheme not in URL_SCHEMES or not parts.hostname:
            raise ValueError(f"url {value[:100]!r} must be absolute with a host, scheme one of {URL_SCHEMES}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("url must not carry credentials (user:password@); they would be stored and shown")
        return value

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: str) -> str:
        try:
            return validate_digest(value)
        except InvalidDigestError as exc:
            raise ValueError(str(exc)) from exc


ExternalParent = Annotated[HuggingFaceSource | UrlSource, Field(discriminator="kind")]


class LineageParent(_Strict):
    """Exactly one of: a registry version (``ns/name@version-or-alias``) or an external source."""

    ref: str | None = Field(default=None, max_length=400)
    external: ExternalParent | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> LineageParent:
        if (self.ref is None) == (self.external is None):
            raise ValueError("give exactly one of 'ref' (ns/name@version) or 'external'")
        return self


def _check_text(value: str, what: str) -> str:
    """Refuse lone surrogates: they have no UTF-8 form, so they could be neither stored nor audited."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not valid Unicode text (lone surrogate)") from exc
    return value


def _check_scalar(key: str, value: Any) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"attribute {key!r}: integers must be within +-2**53 (I-JSON) to survive every parser")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"attribute {key!r}: numbers must be finite")
        return
    if isinstance(value, str):
        if len(value) > MAX_ATTRIBUTE_STRING:
            raise ValueError(f"attribute {key!r}: strings are at most {MAX_ATTRIBUTE_STRING} characters")
        _check_text(value, f"attribute {key!r}")
        return
    raise ValueError(f"attribute {key!r}: values are strings, numbers, booleans, null or lists of those")


def check_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """Small, flat, JSON-clean attributes, with the well-known ones typed (they feed later computations)."""
    if len(attributes) > MAX_ATTRIBUTES:
        raise ValueError(f"at most {MAX_ATTRIBUTES} attributes per edge")
    for key, value in attributes.items():
        if not _ATTRIBUTE_KEY.match(key):
            raise ValueError(f"attribute name {key[:70]!r}: use lowercase letters, digits and '_' (max 64)")
        if isinstance(value, list):
            if len(value) > MAX_ATTRIBUTE_LIST:
                raise ValueError(f"attribute {key!r}: lists hold at most {MAX_ATTRIBUTE_LIST} items")
            for item in value:
                _check_scalar(key, item)
        else:
            _check_scalar(key, value)
    fraction = attributes.get("mixture_fraction")
    if fraction is not None and (
        isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction <= 1
    ):
        raise ValueError("attribute 'mixture_fraction' must be a number between 0 and 1")
    count = attributes.get("record_count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise ValueError("attribute 'record_count' must be a non-negative integer")
    for key in ("role", "split"):
        if attributes.get(key) is not None and not isinstance(attributes[key], str):
            raise ValueError(f"attribute {key!r} must be a string")
    if len(json.dumps(attributes, separators=(",", ":"))) > MAX_ATTRIBUTES_BYTES:
        raise ValueError(f"attributes are at most {MAX_ATTRIBUTES_BYTES} bytes of JSON")
    return attributes


class LineageDeclaration(_Strict):
    """One edge from the version being pushed (or an existing one) to a parent."""

    type: EdgeType
    parent: LineageParent
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_attributes(value)


class QuarantineRequest(_Strict):
    # Documented as: something besides spaces, and no NUL (refused before parsing, registry.web.nul_guard).
    reason: str = Field(min_length=1, max_length=2_000, json_schema_extra={"pattern": r"^[^\x00]*[^\s\x00][^\x00]*$"})

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a reason is required")
        return _check_text(value, "reason")


class KeyRequest(_Strict):
    public_key: str = Field(min_length=1, max_length=16_384, description="PEM public key (ECDSA P-256/P-384, Ed25519)")
    label: str = Field(default="", max_length=200)
    artifacts: str = Field(default="*", max_length=200, description="glob over artifact names this key may sign")


class KeyRevokeRequest(_Strict):
    reason: str = Field(min_length=1, max_length=2_000)


class SignatureRequest(_Strict):
    envelope: dict[str, Any]


# A caller's random nonce (e.g. ``secrets.token_urlsafe(24)``): echoed in signed receipts and attestations.
NONCE_PATTERN = r"^[A-Za-z0-9_-]+$"


class VerifyRequest(_Strict):
    reference: str = Field(description="namespace/name@version-or-alias")
    observed: dict[str, str] | None = Field(default=None, description="path -> digest the job computed on disk")
    nonce: str | None = Field(default=None, min_length=16, max_length=128, pattern=NONCE_PATTERN,
                              description="random value chosen by the caller, echoed inside the signed receipt")
