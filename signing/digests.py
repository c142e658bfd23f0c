"""Digest strings: ``<algorithm>:<lowercase hex>``, the one spelling used everywhere."""

from __future__ import annotations

import re

ALGORITHMS: dict[str, int] = {"sha256": 64, "blake3": 64}
_DIGEST_RE = re.compile(r"^(sha256|blake3):([0-9a-f]{64})$")


class InvalidDigestError(ValueError):
    """A digest string that is not ``sha256:<64 hex>`` or ``blake3:<64 hex>``."""


def parse_digest(value: object) -> tuple[str, str]:
    """Split a digest string into (algorithm, hex), refusing anything non-canonical."""
    if not isinstance(value, str):
        raise InvalidDigestError(f"digest must be a string, got {type(value).__name__}")
    match = _DIGEST_RE.match(value)
    if match is None:
        raise InvalidDigestError(
            f"bad digest {value[:80]!r}: expected 'sha256:' or 'blake3:' followed by 64 lowercase hex digits"
        )
    return match.group(1), match.group(2)


def validate_digest(value: object) -> str:
    """Return the digest unchanged if canonical, else raise InvalidDigestError."""
    parse_digest(value)
    assert isinstance(value, str)
    return value
