"""Exceptions raised inside the scanners; the dispatcher turns each into a finding.

Every one carries the member (where in the file) and offset, so a report can say
exactly which bytes could not be analysed. None of them ever escapes
``scan_path``/``scan_file``/``scan_bytes``: fail closed means they become
``error`` (or ``malicious`` for a decompression bomb) findings, never a traceback.
"""

from __future__ import annotations


class ScanError(Exception):
    """The bytes could not be analysed; the verdict becomes ``error``."""

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class TruncatedError(ScanError):
    """The data ended before a structure was complete."""


class MalformedError(ScanError):
    """The data violates its format (bad opcode, bad header, stack underflow...)."""


class LimitExceeded(ScanError):
    """A scanner limit (size, depth, memo, stack) was hit; the content is not analysed."""


class BombError(ScanError):
    """Decompression output grew beyond the allowed ratio or members overlap: a bomb."""
