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

Portability (also the registry's rules only, applied by :func:`check_portable_paths`
through ``Manifest.check_portable``; model-signing manifests holding such names
still parse and verify):

- a segment may not end in ``.`` or a space (Windows drops them, so ``f.``
  and ``f`` are one file there), nor be a Windows device name (``CON``,
  ``PRN``, ``AUX``, ``NUL``, ``COM1``-``COM9``, ``LPT1``-``LPT9``, their
  superscript-digit spellings, ``CONIN$`` and ``CONOUT$``), in any case, with or
  without an extension (``nul.txt``, ``Com1.tar.gz``);
- no Unicode format character (category Cf: zero-width joiners and spaces,
  the BOM U+FEFF, soft hyphens, tag characters...): invisible, so two names
  that display alike could name different files;
- NFKC: each segment is checked a second time in its NFKC (compatibility)
  form, which must hold no ``/`` or ``\\``, must not be ``.`` or ``..``, and
  must pass the rules above; so a full-width solidus (U+FF0F) or full-width
  dots (U+FF0E) can never become a separator or a traversal in a tool that
  normalises names. And two paths collide when their NFKC case-folded forms
  are equal (``a.txt`` and its spelling with a full-width U+FF41 ``a``; ``x2`` and ``x²``), as
  they do when they differ only in case. The path itself is never rewritten:
  signed bytes stay as they are, a path that would change meaning is refused.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

MAX_PATH_BYTES = 1024
MAX_COMPONENT_BYTES = 255


# Bidirectional formatting controls (Unicode "Bidi_Control"): they reorder how a name is displayed.
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


# Windows device names: a file so named (with any extension) opens the device instead.
WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul", "conin$", "conout$"}
    | {f"{port}{digit}" for port in ("com", "lpt") for digit in "123456789\u00b9\u00b2\u00b3"}
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
    """Refuse two paths that differ only in case (or in NFKC compatibility form and case), and a file whose
    name folds onto another file's directory."""
    _check_collisions(paths, case_key, "ignoring case", "differ only in case; they collide on macOS and Windows")
    _check_collisions(paths, compat_key, "ignoring case and NFKC compatibility forms",
                      "are one name after NFKC and case folding (full-width or ligature spellings of one name)")


def _check_collisions(paths: list[str], key: Callable[[str], str], ignoring: str, differ: str) -> None:
    folded: dict[str, str] = {}
    for path in paths:
        other = folded.setdefault(key(path), path)
        if other != path:
            raise InvalidPathError(f"paths {other!r} and {path!r} {differ}")
    for path in paths:
        parts = key(path).split("/")
        for depth in range(1, len(parts)):
            clash = folded.get("/".join(parts[:depth]))
            if clash is not None:
                raise InvalidPathError(
                    f"{clash!r} is a file but {path!r} puts a file under a directory of the same name {ignoring}"
                )


def _segment_problem(segment: str) -> str | None:
    """Why ``segment`` is not portable as written, or None."""
    if segment.endswith((".", " ")):
        return "ends in '.' or a space, which Windows drops"
    stem = segment.split(".", 1)[0].rstrip(" ")
    if stem.casefold() in WINDOWS_DEVICES:
        return f"is the Windows device name {stem!r}"
    for ch in segment:
        if unicodedata.category(ch) == "Cf":
            return f"contains the invisible format character U+{ord(ch):04X}"
    return None


def check_portable_path(path: str) -> str:
    """Return ``path`` if it is valid and portable (see the module docstring), else raise."""
    validate_relative_path(path)
    for segment in path.split("/"):
        problem = _segment_problem(segment)
        if problem is not None:
            raise InvalidPathError(f"path {path!r}: segment {segment!r} {problem}")
        compat = unicodedata.normalize("NFKC", segment)
        if compat == segment:
            continue
        if "/" in compat or "\\" in compat or compat in (".", ".."):
            problem = "would hold a path separator or be a '.' or '..' segment"
        else:
            problem = _segment_problem(compat)
        if problem is not None:
            raise InvalidPathError(f"path {path!r}: segment {segment!r} in its NFKC form {compat!r} {problem}")
    return path


def compat_key(path: str) -> str:
    """The spelling two paths share once Unicode compatibility forms (NFKC) and case are folded."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", path).casefold())


def check_portable_paths(paths: list[str]) -> None:
    """The registry's rules for a manifest's paths: each portable, no two colliding by case or NFKC."""
    for path in paths:
        check_portable_path(path)
    check_case_collisions(paths)
