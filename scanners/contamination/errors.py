"""Exceptions of the contamination detectors.

Every error a caller can provoke with bad input is one of these, with a message
naming the file and the place in it (line, row) and the reason, so that the
registry can answer a clear 4xx and a scan can fail closed (``error``, never
``clean``) instead of surfacing a traceback from deep inside a parser.
"""

from __future__ import annotations

from pathlib import Path


class ContaminationError(Exception):
    """Base class: the data could not be assessed."""


class RecordFormatError(ContaminationError, ValueError):
    """A dataset file is malformed, unsupported or lacks the configured text field.

    ``path`` is the file, ``line`` the 1-based physical line (JSON lines, text,
    CSV) and ``row`` the 1-based record number (CSV data rows, Parquet rows)
    where the problem was found, when known.
    """

    def __init__(self, path: str | Path, reason: str, *, line: int | None = None, row: int | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.line = line
        self.row = row
        where = self.path
        if line is not None:
            where += f":{line}"
        if row is not None:
            where += f" (row {row})"
        super().__init__(f"{where}: {reason}")


class IndexFormatError(ContaminationError, ValueError):
    """A persisted fingerprint index is missing, torn, tampered with or from an incompatible version."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DuplicateDatasetError(ContaminationError, ValueError):
    """A dataset reference is already in the index: adding it twice would double-count its records."""


class ModelLoadError(ContaminationError, ValueError):
    """A detector model directory cannot be used (missing files, pickle-only weights, unknown layout)."""


class DetectorUnavailableError(ContaminationError, RuntimeError):
    """The statistical detectors need torch and transformers, which are not installed."""
