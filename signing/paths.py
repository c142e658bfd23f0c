"""Rules for the relative paths that appear inside manifests.

A manifest path names a file inside a version. It must mean the same thing on
every operating system and must never escape the directory it is extracted
into, so we accept one canonical spelling only and refuse everything else
rather than trying to "fix" hostile input.

Unicode: a path must already be in NFC (the form Linux, Windows and git
produce; macOS's NFD spellings are refused, not silently rewritten, because
rewriting would change the signed bytes). Control characters (C0, DEL, C1),
line/paragraph separators and the bidirectional controls that can make a name
display as another (U+202E "right-to-left override" and friends) are refused.
Case: a registry manifest may not hold two paths that differ only in case
(after Unicode case folding), because they collide on macOS and Windows
checkouts (:func:`check_case_collisions`). That rule is the registry's, not
model-signing's, so :func:`check_path_set` alone does not apply it.
"""

from __future__ import annotations

import unicodedata

MAX_PATH_BYTES = 1024
MAX_COMPONENT_BYTES = 255


# Bidirectional formatting controls (Unicode "Bidi_Control"): they reorder how a name is displayed.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


class InvalidPathError(ValueError):
    """A manifest path that is not relative, normalised, UTF-8 and traversal-free."""


def validate_relative_path(path: object) -> str:
    """Return ``path`` unchanged if it is a canonical relative POSIX path, else raise.

    Refused: empty paths, absolute roots, drive letters, backslashes, NUL and other
    control characters (C0, DEL, C1), line separators, bidi controls, ``.``/``..``/empty
    components, trailing slashes, non-NFC Unicode (two spellings of one name), and over-long names.
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
    for ch in path:
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            raise InvalidPathError(f"path contains a control character U+{ord(ch):04X} (NUL included): {path!r}")
        if ch in BIDI_CONTROLS:
            raise InvalidPathError(f"path contains a bidirectional control character U+{ord(ch):04X}: {path!r}")
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


def case_key(path: str) -> str:
    """The spelling two paths share when a case-insensitive file system (macOS, Windows) sees them as one."""
    return unicodedata.normalize("NFC", path.casefold())


def check_case_collisions(paths: list[str]) -> None:
    """Refuse two paths that differ only in case, and a file whose name folds onto another file's directory."""
    folded: dict[str, str] = {}
    for path in paths:
        key = case_key(path)
        other = folded.setdefault(key, path)
        if other != path:
            raise InvalidPathError(
                f"paths {other!r} and {path!r} differ only in case; they collide on macOS and Windows"
            )
    for path in paths:
        parts = case_key(path).split("/")
        for depth in range(1, len(parts)):
            clash = folded.get("/".join(parts[:depth]))
            if clash is not None:
                raise InvalidPathError(
                    f"{clash!r} is a file but {path!r} puts a file under a directory of the same name ignoring case"
                )
