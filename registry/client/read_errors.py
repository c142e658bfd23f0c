"""Errors of the verified read: what the loader raises, and the signal that stops sibling files early."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


class LoaderError(Exception):
    """Base of every verified-loader failure. When it is raised, nothing was returned or placed."""


class VerifiedLoadError(LoaderError):
    """One file (or the directory) failed verification; ``path`` names it, ``reason`` says why.

    ``code`` is a stable word for programs: ``bad_expected``, ``unsafe_tree``, ``extra_file``,
    ``missing_file``, ``unreadable``, ``changed``, ``digest_mismatch``, ``pickle_refused``,
    ``unknown_format``, ``malformed_safetensors``, ``unsupported_dtype``, ``duplicate_tensor``,
    ``out_of_memory``, ``no_weights``.
    """

    def __init__(self, path: str, reason: str, *, code: str = "refused") -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.code = code


class ReadAborted(Exception):
    """Another file failed first; this one stopped early. Never escapes the module."""
