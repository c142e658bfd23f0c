"""Names of namespaces, artifacts, versions and aliases, and ``ns/name@ref`` references."""

from __future__ import annotations

import re
from dataclasses import dataclass

# The rules as JSON Schema patterns (no look-around, which neither pydantic nor OpenAPI tools accept): they start
# and end with a letter or digit and hold no "..". The OpenAPI document declares exactly these (registry.api.refs).
SEGMENT_MAX, VERSION_MAX, ALIAS_MAX = 100, 128, 63
SEGMENT_PATTERN = r"^[A-Za-z0-9](?:(?:[A-Za-z0-9_-]|\.[A-Za-z0-9_-])*\.?[A-Za-z0-9])?$"
VERSION_PATTERN = r"^[A-Za-z0-9](?:(?:[A-Za-z0-9_+-]|\.[A-Za-z0-9_+-])*\.?[A-Za-z0-9])?$"
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,62}$"
_SEGMENT = re.compile(SEGMENT_PATTERN)
_VERSION = re.compile(VERSION_PATTERN)
_ALIAS = re.compile(ALIAS_PATTERN)
KINDS = ("model", "dataset", "code", "prompt-set", "eval-report")
# Names a new version may not take: ``latest`` is the alias a bare reference means and ``main`` the HF branch;
# a version so named would hide them for good. 40 hex digits (any case) is a commit id's shape on the HF side.
# These rules apply when a name is created only, so the patterns above (what lookups accept) stay as they are.
RESERVED_VERSION_NAMES = frozenset({"latest", "main"})
_COMMIT_SHAPED = re.compile(r"^[0-9A-Fa-f]{40}$")


class InvalidNameError(ValueError):
    """A name or reference that does not follow the naming rules."""


class ReservedNameError(InvalidNameError):
    """A well-formed name that a new version or alias may not take (see ``RESERVED_VERSION_NAMES``)."""


def validate_segment(value: str, what: str) -> str:
    if not isinstance(value, str) or len(value) > SEGMENT_MAX or not _SEGMENT.fullmatch(value):
        raise InvalidNameError(
            f"invalid {what} {value!r}: use 1-100 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return value


def validate_version(value: str) -> str:
    if not isinstance(value, str) or len(value) > VERSION_MAX or not _VERSION.fullmatch(value):
        raise InvalidNameError(
            f"invalid version {value!r}: use 1-128 letters, digits, '.', '_', '+' or '-', "
            "starting and ending with a letter or digit"
        )
    return value


def validate_alias(value: str) -> str:
    if not isinstance(value, str) or not _ALIAS.fullmatch(value):
        raise InvalidNameError(
            f"invalid alias {value!r}: use 1-63 lowercase letters, digits, '_' or '-', starting with a letter"
        )
    return value


def is_commit_shaped(value: str) -> bool:
    """True for exactly 40 hex digits: a name the HF protocol could only read as a full commit id."""
    return _COMMIT_SHAPED.fullmatch(value) is not None


def validate_new_version(value: str) -> str:
    """The name of a version about to be created: the naming rule, and none of the reserved names."""
    validate_version(value)
    if value in RESERVED_VERSION_NAMES:
        raise ReservedNameError(
            f"version name {value!r} is reserved ({' and '.join(sorted(RESERVED_VERSION_NAMES))} are aliases: "
            "`latest` is what a reference without a version means, `main` the Hugging Face branch)"
        )
    if is_commit_shaped(value):
        raise ReservedNameError(
            f"version name {value!r} is reserved: 40 hex digits is the shape of a commit id, which it could shadow"
        )
    return value


def validate_new_alias(value: str) -> str:
    """The name of an alias about to be created: the naming rule, and not the shape of a commit id."""
    validate_alias(value)
    if is_commit_shaped(value):
        raise ReservedNameError(
            f"alias {value!r} is reserved: 40 hex digits is the shape of a commit id, which it could shadow"
        )
    return value


def validate_kind(value: str) -> str:
    if value not in KINDS:
        raise InvalidNameError(f"invalid kind {value!r}: expected one of {', '.join(KINDS)}")
    return value


@dataclass(frozen=True, slots=True)
class Ref:
    """``namespace/name@ref`` where ref is a version or an alias (default ``latest``)."""

    namespace: str
    name: str
    ref: str | None = None

    @property
    def repo(self) -> str:
        return f"{self.namespace}/{self.name}"

    def __str__(self) -> str:
        return self.repo if self.ref is None else f"{self.repo}@{self.ref}"


def parse_ref(text: str, *, require_ref: bool = False) -> Ref:
    """Parse ``ns/name`` or ``ns/name@ref``; the ref may be a version or an alias."""
    if not isinstance(text, str) or text.count("/") != 1:
        raise InvalidNameError(f"invalid reference {text!r}: expected namespace/name[@version-or-alias]")
    repo, sep, ref = text.partition("@")
    namespace, name = repo.split("/")
    validate_segment(namespace, "namespace")
    validate_segment(name, "name")
    if sep:
        validate_version(ref)
    elif require_ref:
        raise InvalidNameError(f"reference {text!r} needs a version: namespace/name@version")
    return Ref(namespace, name, ref if sep else None)
