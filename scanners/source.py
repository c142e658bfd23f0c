"""Byte sources the scanners read from, without ever loading a whole file.

A :class:`Window` is a byte range of a seekable file (a whole file, a stored zip
member, a tensor payload): it can be re-read and sub-ranged, so large values can
be skipped now and revisited later. A :class:`Reader` is a buffered forward
cursor over a window or over a one-way stream (a decompressor); it tracks
positions relative to its start, can skip cheaply on windows, and computes the
CRC-32 of what it consumed so zip CRCs can be checked in the same pass.
"""

from __future__ import annotations

import io
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, Protocol

from scanners.errors import LimitExceeded, MalformedError, TruncatedError

CHUNK = 256 * 1024


class RawStream(Protocol):
    """Anything with ``read(n)`` returning at most n bytes and ``b""`` at the end."""

    def read(self, n: int, /) -> bytes: ...


class Window:
    """The byte range ``[start, start + length)`` of a seekable binary file."""

    def __init__(self, f: BinaryIO, start: int, length: int) -> None:
        if start < 0 or length < 0:
            raise ValueError("window start and length must be non-negative")
        self.f = f
        self.start = start
        self.length = length

    def read_at(self, pos: int, n: int) -> bytes:
        """Up to ``n`` bytes at ``pos`` (relative to the window); short only at its end."""
        if pos >= self.length or n <= 0:
            return b""
        self.f.seek(self.start + pos)
        return self.f.read(min(n, self.length - pos))

    def sub(self, offset: int, length: int) -> Window:
        """A window over part of this one, clipped to its end."""
        offset = min(max(offset, 0), self.length)
        return Window(self.f, self.start + offset, min(length, self.length - offset))


class _WindowStream:
    """Adapts a Window to RawStream with a movable cursor."""

    def __init__(self, window: Window) -> None:
        self.window = window
        self.pos = 0

    def read(self, n: int, /) -> bytes:
        data = self.window.read_at(self.pos, n)
        self.pos += len(data)
        return data


class Reader:
    """Buffered forward reader; positions are relative to where it started."""

    def __init__(self, raw: RawStream | Window, *, size: int | None = None, track_crc: bool = False) -> None:
        if isinstance(raw, Window):
            self.window: Window | None = raw
            self._stream: RawStream = _WindowStream(raw)
            self.size: int | None = raw.length
        else:
            self.window = None
            self._stream = raw
            self.size = size
        self._buf = b""
        self._i = 0
        self._base = 0  # stream offset of self._buf[0]
        self._eof = False
        self.track_crc = track_crc
        self.crc = 0
        self.crc_complete = True  # False once bytes were skipped without being read

    # -- positions -------------------------------------------------------------------------------
    def tell(self) -> int:
        return self._base + self._i

    @property
    def seekable(self) -> bool:
        return self.window is not None

    # -- buffering -------------------------------------------------------------------------------
    def _fill(self, need: int) -> bool:
        """Make at least ``need`` unread bytes available; False if the data ends first."""
        avail = len(self._buf) - self._i
        if avail >= need:
            return True
        if self._eof:
            return False
        parts = [self._buf[self._i :]]
        self._base += self._i
        self._i = 0
        while avail < need and not self._eof:
            chunk = self._stream.read(max(CHUNK, need - avail))
            if not chunk:
                self._eof = True
                break
            if self.track_crc:
                self.crc = zlib.crc32(chunk, self.crc)
            parts.append(chunk)
            avail += len(chunk)
        self._buf = b"".join(parts)
        return avail >= need

    def peek(self, n: int) -> bytes:
        """Up to ``n`` upcoming bytes, without consuming them."""
        self._fill(n)
        return self._buf[self._i : self._i + n]

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end of the data."""
        self._fill(n)
        data = self._buf[self._i : self._i + n]
        self._i += len(data)
        return data

    def read_exact(self, n: int, what: str) -> bytes:
        if n < 0:
            raise MalformedError(f"negative length {n} for {what}", offset=self.tell())
        start = self.tell()
        data = self.read(n)
        if len(data) != n:
            raise TruncatedError(f"data ends inside {what} ({len(data)} of {n} bytes)", offset=start)
        return data

    def read_byte(self) -> int:
        """The next byte, or -1 at the end of the data."""
        if self._i < len(self._buf) or self._fill(1):
            b = self._buf[self._i]
            self._i += 1
            return b
        return -1

    def readline(self, limit: int, what: str) -> bytes:
        """One line including its ``\\n``; refuses lines longer than ``limit`` and unterminated lines."""
        start = self.tell()
        searched = 0
        while True:
            j = self._buf.find(b"\n", self._i + searched)
            if j >= 0:
                line = self._buf[self._i : j + 1]
                if len(line) > limit:
                    break
                self._i = j + 1
                return line
            searched = len(self._buf) - self._i
            if searched > limit:
                break
            if not self._fill(searched + CHUNK // 4) and len(self._buf) - self._i == searched:
                raise TruncatedError(f"data ends inside {what} (no newline)", offset=start)
        raise LimitExceeded(f"{what} longer than {limit} bytes", offset=start)

    def skip(self, n: int, what: str) -> None:
        """Move forward ``n`` bytes without keeping them; on windows this is a seek."""
        if n < 0:
            raise MalformedError(f"negative length {n} for {what}", offset=self.tell())
        start = self.tell()
        avail = len(self._buf) - self._i
        if n <= avail:
            self._i += n
            return
        if self.window is not None:
            target = start + n
            if target > self.window.length:
                raise TruncatedError(
                    f"data ends inside {what} ({self.window.length - start} of {n} bytes)", offset=start
                )
            assert isinstance(self._stream, _WindowStream)
            self._stream.pos = target
            self._buf, self._i, self._base = b"", 0, target
            self._eof = False
            self.crc_complete = False
            return
        left = n - avail
        self._base += len(self._buf)
        self._buf, self._i = b"", 0
        while left:
            chunk = self._stream.read(min(CHUNK * 4, left))
            if not chunk:
                self._eof = True
                raise TruncatedError(f"data ends inside {what} ({n - left} of {n} bytes)", offset=start)
            if self.track_crc:
                self.crc = zlib.crc32(chunk, self.crc)
            left -= len(chunk)
            self._base += len(chunk)

    def at_eof(self) -> bool:
        return not self._fill(1)

    def drain(self) -> int:
        """Consume the rest of the data (for CRC checks); returns how many bytes that was."""
        start = self.tell()
        self._fill(0)
        self._base += len(self._buf)
        self._buf, self._i = b"", 0
        while not self._eof:
            chunk = self._stream.read(CHUNK * 4)
            if not chunk:
                self._eof = True
                break
            if self.track_crc:
                self.crc = zlib.crc32(chunk, self.crc)
            self._base += len(chunk)
        return self.tell() - start

    def window_at(self, offset: int, length: int) -> Window | None:
        """A re-readable window over ``[offset, offset + length)`` of this reader, if it is seekable."""
        if self.window is None:
            return None
        return self.window.sub(offset, length)


class WindowFile(io.RawIOBase):
    """A seekable, read-only file object over a Window, for libraries that want one (zipfile, h5py, py7zr)."""

    def __init__(self, window: Window) -> None:
        super().__init__()
        self.w = window
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.w.length}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.w.read_at(self.pos, len(b))
        b[: len(data)] = data
        self.pos += len(data)
        return len(data)


@contextmanager
def random_access(reader: Reader, max_bytes: int, what: str = "archive") -> Iterator[Window]:
    """The reader's bytes as a re-readable Window: its own when it has one, else a temporary copy (an archive
    inside a decompressed stream needs random access), refused past ``max_bytes`` and deleted afterwards."""
    if reader.window is not None:
        yield reader.window
        return
    with tempfile.TemporaryFile() as f:
        total = 0
        while chunk := reader.read(CHUNK * 4):
            total += len(chunk)
            if total > max_bytes:
                raise LimitExceeded(f"{what} inside a stream is larger than {max_bytes} bytes")
            f.write(chunk)
        f.seek(0)
        yield Window(f, 0, total)
