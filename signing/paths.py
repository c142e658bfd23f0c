"""Rules for the relative paths that appear inside manifests.

A manifest path names a file inside a version. It must mean the same thing on
every operating system and must never escape the directory it is extracted
into, so we accept one canonical spelling only and refuse everything else
rather than trying to "fix" hostile input.
"""

from __future__ import annotations

import unicodedata

MAX_PATH_BYTES = 1024
MAX_COMPONENT_BYTES = 255


class InvalidPathError(ValueError):
    """A manifest path that is not relative, normalised, UTF-8 and traversal-free."""


def validate_relative_path(path: object) -> str:
    """Return ``path`` unchanged if it is a canonical relative POSIX path, else raise.

    Refused: empty paths, absolute roots, drive letters, backslashes, NUL and other
    control characters, ``.``/``..``/empty components, trailing slashes, non-NFC
    Unicode (two spellings of one name), and over-long names.
    """
    if not isinstance(path, str):
        raise InvalidPathError(f"path must be a string, got {type(path).__name__}")
    if not path:
        raise InvalidPathError("path is empty")
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidPathError(f"path is not valid UTF-8: {path!r}") from exc
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidPathError(f"path longer than {MAX_PATH_BYTES} bytes")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        raise InvalidPathError(f"path contains a control character (NUL included): {path!r}")
    if "\\" in path:
        raise InvalidPathError(f"path contains a backslash: {path!r}")
    if path.startswith("/"):
        raise InvalidPathError(f"path is absolute: {path!r}")
    if len(path) >= 2 and path[1] == ":" and path[0].isalpha():
        raise InvalidPathError(f"path starts with a drive letter: {path!r}")
    if unicodedata.normalize("NFC", path) != path:
        raise InvalidPathError(f"path is not in Unicode NFC form: {path!r}")
    for component in path.split("/"):
        if component in ("", ".", ".."):
            raise InvalidPathError(f"path has an empty, '.' or '..' component: {path!r}")
        if len(component.encode("utf-8")) > MAX_COMPONENT_BYTES:
            raise InvalidPathError(f"path component longer than {MAX_COMPONENT_BYTES} bytes: {path!r}")
    return path


def check_path_set(paths: list[str]) -> None:
    """Refuse duplicate paths and paths that are both a file and a directory."""
    seen: set[str] = set()
    for path in paths:
        if path in seen:
            raise InvalidPathError(f"duplicate path: {path!r}")
        seen.add(path)
    for path in paths:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            if prefix in seen:
                raise InvalidPathError(f"{prefix!r} is listed as a file but {path!r} puts a file under it")
