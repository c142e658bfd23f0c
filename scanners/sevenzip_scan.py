"""7z archives: the member listing is checked, then every member is decompressed and scanned by content.

py7zr does the decoding (LZMA, LZMA2, BZip2, Deflate, PPMd, ...). Nothing is written where the archive says:
each member streams into a private temporary file through py7zr's writer factory, is charged to the scan's
decompression budget as it grows (so a bomb is stopped while it inflates, not after), is scanned when py7zr
closes it, and is deleted. Names that escape the extraction directory are malicious; links are suspicious; an
encrypted archive cannot be looked into, so it is suspicious.
"""

from __future__ import annotations

import io
import tempfile
from typing import TYPE_CHECKING, BinaryIO

import py7zr
import py7zr.exceptions
from py7zr.io import Py7zIO, WriterFactory

from scanners.context import child
from scanners.errors import BombError, LimitExceeded, MalformedError, ScanError
from scanners.report import Verdict
from scanners.source import Reader, Window, WindowFile, random_access
from scanners.zip_scan import _traversal

if TYPE_CHECKING:
    from scanners.context import Context


class _Member(Py7zIO):
    """One member being decompressed: spooled to a temporary file, charged to the budget, scanned on close."""

    def __init__(self, scan: _Scan, name: str) -> None:
        self.scan = scan
        self.name = name
        self.file: BinaryIO = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.length = 0

    def write(self, s: bytes | bytearray) -> int:
        self.length += len(s)
        self.scan.charge(len(s), self.name)
        return self.file.write(s)

    def read(self, size: int | None = None) -> bytes:
        return self.file.read(-1 if size is None else size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.file.seek(offset, whence)

    def flush(self) -> None:
        self.file.flush()

    def size(self) -> int:
        return self.length

    def close(self) -> None:
        try:
            self.scan.scan_member(Window(self.file, 0, self.length), self.name)
        finally:
            self.file.close()


class _Scan(WriterFactory):
    def __init__(self, ctx: Context, member: str, depth: int, archive_size: int) -> None:
        self.ctx = ctx
        self.member = member
        self.depth = depth
        self.archive_size = max(archive_size, 1)
        self.produced = 0

    def create(self, filename: str) -> Py7zIO:
        return _Member(self, filename)

    def charge(self, n: int, name: str) -> None:
        self.produced += n
        self.ctx.budget.charge(n)
        limits = self.ctx.limits
        if self.produced >= limits.ratio_min_bytes and self.produced / self.archive_size > limits.max_ratio:
            raise BombError(f"7z member {name!r} inflates past {limits.max_ratio:g}x the archive's size")

    def scan_member(self, window: Window, name: str) -> None:
        self.ctx.scan_reader(Reader(window), child(self.member, name), self.depth + 1)


def scan_7z(ctx: Context, reader: Reader, member: str, depth: int) -> str:
    with random_access(reader, ctx.limits.max_spool, "7z archive") as window:
        _scan_archive(ctx, window, member, depth)
    return "7z"


def _scan_archive(ctx: Context, window: Window, member: str, depth: int) -> None:
    try:
        with py7zr.SevenZipFile(io.BufferedReader(WindowFile(window)), mode="r") as archive:
            if archive.needs_password():
                ctx.add(Verdict.SUSPICIOUS, "encrypted 7z archive: its members cannot be analysed", member=member)
                return
            infos = archive.list()
            if len(infos) > ctx.limits.max_zip_members:
                raise LimitExceeded(f"7z has more than {ctx.limits.max_zip_members} members")
            for info in infos:
                _check_entry(ctx, info, member)
            archive.extract(factory=_Scan(ctx, member, depth, window.length))
    except ScanError:
        raise
    except py7zr.exceptions.PasswordRequired:  # the listing itself is encrypted
        ctx.add(Verdict.SUSPICIOUS, "encrypted 7z archive: its members cannot be analysed", member=member)
    except (py7zr.exceptions.ArchiveError, py7zr.exceptions.Bad7zFile, EOFError, ValueError, KeyError,
            IndexError, OSError, TypeError, AttributeError, NotImplementedError) as exc:
        raise MalformedError(f"corrupt or unsupported 7z archive: {type(exc).__name__}: {exc}") from None


def _check_entry(ctx: Context, info: py7zr.FileInfo, member: str) -> None:
    name = info.filename
    if _traversal(name):
        ctx.add(Verdict.MALICIOUS, f"path traversal in 7z member name {name!r}", member=member, symbol=name)
    if getattr(info, "is_symlink", False):
        ctx.add(Verdict.SUSPICIOUS, f"7z link member {name!r}", member=member, symbol=name)
