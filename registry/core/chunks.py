"""Per-chunk SHA-256 lists: what lets a byte range of a blob be checked without hashing the whole file.

A blob is cut into fixed-size chunks (the last one may be short); the list is the
concatenation of each chunk's 32-byte SHA-256. It is computed while the blob is
written and stored with it, so a Range response can read and check only the
chunks it covers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

CHUNK_SIZE = 1 << 20
HASH_LEN = 32


@dataclass(frozen=True)
class ChunkList:
    """The SHA-256 of every ``chunk_size`` chunk of one blob, concatenated."""

    chunk_size: int
    hashes: bytes

    def __len__(self) -> int:
        return len(self.hashes) // HASH_LEN

    def hash_of(self, index: int) -> bytes:
        return self.hashes[index * HASH_LEN : (index + 1) * HASH_LEN]


def chunk_count(size: int, chunk_size: int = CHUNK_SIZE) -> int:
    """How many chunks a blob of ``size`` bytes has (an empty blob has none)."""
    return -(-size // chunk_size)


class ChunkHasher:
    """Hashes a stream cut at fixed chunk boundaries, whatever sizes the pieces arrive in."""

    def __init__(self, chunk_size: int = CHUNK_SIZE) -> None:
        self.chunk_size = chunk_size
        self._done: list[bytes] = []
        self._current = hashlib.sha256()
        self._filled = 0

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), self.chunk_size - self._filled)
            self._current.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == self.chunk_size:
                self._done.append(self._current.digest())
                self._current, self._filled = hashlib.sha256(), 0

    def finish(self) -> ChunkList:
        """The list for everything fed so far (the partial last chunk included)."""
        done = list(self._done)
        if self._filled:
            done.append(self._current.copy().digest())
        return ChunkList(self.chunk_size, b"".join(done))


def chunk_list_of(data: bytes, chunk_size: int = CHUNK_SIZE) -> ChunkList:
    """The chunk list of bytes already in memory (small inline uploads)."""
    hasher = ChunkHasher(chunk_size)
    hasher.update(data)
    return hasher.finish()
