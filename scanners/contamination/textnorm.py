"""Text normalisation shared by the exact hash and the MinHash shingles.

Why normalise: a copied synthetic record often differs only in case, Unicode
form, punctuation or spacing. Comparing the NFKC-casefolded word sequence makes
those copies *exact* matches, and leaves real word edits to MinHash.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """The NFKC-normalised, case-folded word tokens of ``text`` (punctuation and spacing dropped)."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def record_hash(tokens: list[str]) -> bytes:
    """SHA-256 of the normalised word sequence: equal for copies that differ only in case/punctuation/spacing."""
    return hashlib.sha256(" ".join(tokens).encode("utf-8")).digest()


def shingles(tokens: list[str], n: int) -> set[bytes]:
    """The set of word ``n``-grams (UTF-8, space-joined); a record shorter than ``n`` words is one shingle."""
    if len(tokens) <= n:
        return {" ".join(tokens).encode("utf-8")} if tokens else set()
    return {" ".join(tokens[i : i + n]).encode("utf-8") for i in range(len(tokens) - n + 1)}
