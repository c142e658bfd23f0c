"""Streaming decompression with bomb protection.

Each decompressor is driven with an output cap per call, so memory stays bounded
whatever the ratio; the bytes produced are charged to the scan's total budget and
compared with the compressed bytes consumed, and a stream that outgrows the
ratio limit is a bomb (``malicious``), not an error.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable
from typing import Protocol

from scanners.errors import BombError, LimitExceeded, MalformedError, TruncatedError
from scanners.limits import Limits
from scanners.source import CHUNK, Reader


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


class Budget:
    """Decompressed bytes of one whole scan, against ``Limits.max_decompressed_total``."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.total = 0

    def charge(self, n: int) -> None:
        self.total += n
        if self.total > self.limits.max_decompressed_total:
            raise LimitExceeded(
                f"decompressed data exceeds the scan limit of {self.limits.max_decompressed_total} bytes"
            )


def _zlib_factory(wbits: int) -> Callable[[], _Decompressor]:
    return lambda: zlib.decompressobj(wbits)


STREAM_FORMATS: dict[str, tuple[Callable[[], _Decompressor], bytes | None]] = {
    "gzip": (_zlib_factory(31), b"\x1f\x8b"),
    "zlib": (_zlib_factory(15), None),
    "deflate": (_zlib_factory(-15), None),
    "bzip2": (bz2.BZ2Decompressor, b"BZh"),
    "xz": (lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ), b"\xfd7zXZ\x00"),
    "lzma": (lambda: lzma.LZMADecompressor(format=lzma.FORMAT_ALONE), None),
}
"""name -> (decompressor factory, magic of a following concatenated stream or None)."""


class Inflater:
    """A RawStream of decompressed bytes read from ``src``, bounded per call and overall."""

    def __init__(self, src: Reader, fmt: str, *, budget: Budget, length: int | None = None) -> None:
        self.src = src
        self.fmt = fmt
        self.factory, self.magic = STREAM_FORMATS[fmt]
        self.d = self.factory()
        self.budget = budget
        self.limits = budget.limits
        self.remaining = length  # compressed bytes left in src (zip members), None = to the end
        self.consumed = 0
        self.produced = 0
        self.pending = b""
        self.trailing = 0  # bytes after the (last) compressed stream
        self.done = False

    def _feed(self) -> bytes:
        want = CHUNK if self.remaining is None else min(CHUNK, self.remaining)
        data = self.src.read(want) if want else b""
        self.consumed += len(data)
        if self.remaining is not None:
            self.remaining -= len(data)
        return data

    def _next_stream(self) -> bool:
        """After one stream ends: start the next concatenated one, or note trailing bytes."""
        rest = self.d.unused_data + self.pending
        self.pending = b""
        peek = rest + (self.src.peek(8) if len(rest) < 8 else b"")
        if self.magic is not None and peek.startswith(self.magic):
            self.d = self.factory()
            self.pending = rest
            return True
        self.trailing = len(rest) + (len(self.src.peek(1)) if self.remaining != 0 else 0)
        return False

    def read(self, n: int, /) -> bytes:
        if self.done or n <= 0:
            return b""
        try:
            while True:
                if self.d.eof and not self._next_stream():
                    self.done = True
                    return b""
                data = self.pending
                needs_input = getattr(self.d, "needs_input", None)
                if not data and (needs_input is None or needs_input):
                    data = self._feed()
                    if not data:
                        raise TruncatedError(f"{self.fmt} stream ends before its end marker")
                out = self.d.decompress(data, n)
                tail = getattr(self.d, "unconsumed_tail", b"")
                self.pending = tail if needs_input is None else b""
                if out:
                    self._account(len(out))
                    return out
        except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as exc:
            raise MalformedError(f"corrupt {self.fmt} stream: {exc}") from None

    def _account(self, n: int) -> None:
        self.produced += n
        self.budget.charge(n)
        if self.produced > self.limits.ratio_min_bytes and self.produced > self.limits.max_ratio * max(
            self.consumed, 1
        ):
            raise BombError(
                f"decompression bomb: {self.fmt} data expands more than {self.limits.max_ratio:g}x "
                f"({self.produced} bytes from {self.consumed})"
            )
