"""Record fingerprints: an exact hash plus a datasketch MinHash signature over word n-grams.

Parameters are fixed per index (``FingerprintConfig``) and persisted with it,
together with the MinHash permutation parameters themselves, so that a
signature computed today still compares with one stored years ago even if
datasketch changes how it derives permutations from a seed.

The signature scheme is datasketch's ``affine32`` (its 2.x default: a MurmurHash3
premix then ``a*h + b mod 2^32``), so signatures are uint32 arrays. Shingles are
hashed with CRC-32 rather than datasketch's default SHA-1: twice the throughput
measured here, and the premix makes CRC's linearity harmless for MinHash.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from datasketch import MinHash
from numpy.typing import NDArray

from scanners.contamination.passages import Hashes, PassageConfig, passage_fingerprint
from scanners.contamination.textnorm import record_hash, shingles, words

SCHEME = "affine32"
SHINGLE_HASH = "crc32"
HASH_BYTES = 32
SIGNATURE_DTYPE = np.uint32

Signature = NDArray[np.uint32]


@dataclass(frozen=True, slots=True)
class FingerprintConfig:
    """MinHash/LSH parameters of one index; changing any of them means re-fingerprinting.

    Defaults were measured with bench/contamination_bench.py: word 3-grams and
    32 bands of 4 rows over 128 permutations find copies with 2 % and 5 % of
    their words edited, while a candidate must still show an estimated Jaccard
    similarity of at least ``match_threshold`` to count. Records with fewer than
    ``min_words`` words are not matched at all: short phrases ("Thank you.")
    occur in every corpus and prove nothing.
    """

    num_perm: int = 128
    ngram: int = 3
    bands: int = 32
    rows: int = 4
    seed: int = 1
    min_words: int = 6
    match_threshold: float = 0.5

    def __post_init__(self) -> None:
        for name in ("num_perm", "ngram", "bands", "rows", "min_words"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be an integer in [0, 2**32), not {self.seed!r}")
        if self.bands < 2 or self.bands * self.rows > self.num_perm:
            raise ValueError("need bands >= 2 and bands * rows <= num_perm")
        threshold = self.match_threshold
        if not isinstance(threshold, float | int) or isinstance(threshold, bool) or not 0.0 < threshold <= 1.0:
            raise ValueError(f"match_threshold must be in (0, 1], not {threshold!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FingerprintConfig:
        """Strict inverse of ``to_dict``: unknown or missing keys are an error, not a default."""
        expected = set(cls.__dataclass_fields__)
        if set(data) != expected:
            raise ValueError(f"fingerprint config keys {sorted(data)} differ from {sorted(expected)}")
        return cls(**dict(data))


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What the index keeps of one record: no text, only its hash and signature; with passage containment on
    (``scanners.contamination.passages``) also its shingle sample and its query passages."""

    record_hash: bytes
    signature: Signature
    n_words: int
    sample: Hashes | None = None
    passages: tuple[Hashes, ...] = ()


class Fingerprinter:
    """Turns text into ``Fingerprint``s with one fixed set of MinHash permutations (not thread-safe)."""

    def __init__(
        self,
        config: FingerprintConfig | None = None,
        permutations: NDArray[np.uint32] | None = None,
        passages: PassageConfig | None = None,
    ):
        self.config = config or FingerprintConfig()
        self.passages = passages
        if permutations is not None:
            permutations = np.asarray(permutations)
            if permutations.dtype != SIGNATURE_DTYPE or permutations.shape != (2, self.config.num_perm):
                raise ValueError(
                    f"permutations must be a uint32 array of shape (2, {self.config.num_perm}), "
                    f"not {permutations.dtype} {permutations.shape}"
                )
        self._proto = MinHash(
            num_perm=self.config.num_perm,
            seed=self.config.seed,
            hashfunc=zlib.crc32,
            scheme=SCHEME,
            permutations=permutations,
        )

    @property
    def permutations(self) -> NDArray[np.uint32]:
        """The (2, num_perm) uint32 affine parameters (a, b); persist them beside the signatures."""
        return np.asarray(self._proto.permutations, dtype=SIGNATURE_DTYPE)

    def fingerprint(self, text: str) -> Fingerprint | None:
        """The fingerprint of ``text``, or None when it has fewer than ``min_words`` words."""
        tokens = words(text)
        if len(tokens) < self.config.min_words:
            return None
        if self.passages is None:
            return Fingerprint(record_hash(tokens), self.signature_of_tokens(tokens), len(tokens))
        whole, passages = passage_fingerprint(tokens, self.passages)
        return Fingerprint(record_hash(tokens), self.signature_of_tokens(tokens), len(tokens), whole, passages)

    def signature(self, text: str) -> Signature:
        """The MinHash signature of any text (all-max values for a text without words)."""
        return self.signature_of_tokens(words(text))

    def signature_of_tokens(self, tokens: list[str]) -> Signature:
        # One MinHash reused (clear + update) instead of a copy per record: a third faster, so a
        # Fingerprinter is not thread-safe.
        minhash = self._proto
        minhash.clear()
        minhash.update_batch(shingles(tokens, self.config.ngram))
        return np.array(minhash.hashvalues, dtype=SIGNATURE_DTYPE, copy=True)


def estimated_jaccard(query: Signature, candidates: NDArray[np.uint32]) -> NDArray[np.float64]:
    """MinHash estimate of the Jaccard similarity between one signature and each row of ``candidates``."""
    result: NDArray[np.float64] = np.mean(candidates == query[np.newaxis, :], axis=1, dtype=np.float64)
    return result
