"""Names of namespaces, artifacts, versions and aliases, and ``ns/name@ref`` references."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SEGMENT = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$")
_VERSION = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._+-]{0,126}[A-Za-z0-9])?$")
_ALIAS = re.compile(r"^[a-z](?:[a-z0-9_-]{0,62})$")
KINDS = ("model", "dataset", "code", "prompt-set", "eval-report")


class InvalidNameError(ValueError):
    """A name or reference that does not follow the naming rules."""


def validate_segment(value: str, what: str) -> str:
    if not isinstance(value, str) or not _SEGMENT.match(value) or ".." in value:
        raise InvalidNameError(
            f"invalid {what} {value!r}: use 1-100 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return value


def validate_version(value: str) -> str:
    if not isinstance(value, str) or not _VERSION.match(value) or ".." in value:
        raise InvalidNameError(
            f"invalid version {value!r}: use 1-128 letters, digits, '.', '_', '+' or '-', "
            "starting and ending with a letter or digit"
        )
    return value


def validate_alias(value: str) -> str:
    if not isinstance(value, str) or not _ALIAS.match(value):
        raise InvalidNameError(
            f"invalid alias {value!r}: use 1-63 lowercase letters, digits, '_' or '-', starting with a letter"
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
