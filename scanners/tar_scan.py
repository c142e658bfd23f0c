"""Tar archives (including the oldest torch.save format), read as a stream.

``tarfile`` in stream mode parses the headers; each regular member is scanned by
content as it streams past. Names that escape the extraction directory and links
that point outside it are malicious; device files and FIFOs are suspicious.
"""

from __future__ import annotations

import tarfile
from typing import TYPE_CHECKING

from scanners.context import child
from scanners.errors import LimitExceeded, MalformedError
from scanners.report import Verdict
from scanners.source import Reader
from scanners.zip_scan import _traversal

if TYPE_CHECKING:
    from scanners.context import Context


class _ReaderFile:
    """The file-like view of a Reader that tarfile's stream mode needs."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    def read(self, n: int = -1) -> bytes:
        return self.reader.read(n if n >= 0 else 1 << 30)


def scan_tar(ctx: Context, reader: Reader, member: str, depth: int) -> str:
    count = 0
    names: list[str] = []
    try:
        with tarfile.open(fileobj=_ReaderFile(reader), mode="r|") as tf:  # type: ignore[call-overload]
            for info in tf:
                count += 1
                if count > ctx.limits.max_zip_members:
                    raise LimitExceeded(f"tar has more than {ctx.limits.max_zip_members} members")
                names.append(info.name)
                _check_entry(ctx, info, member)
                if not info.isfile():
                    continue
                f = tf.extractfile(info)
                if f is None:
                    continue
                ctx.scan_reader(Reader(f, size=info.size), child(member, info.name), depth + 1)
    except tarfile.TarError as exc:
        raise MalformedError(f"corrupt tar archive: {exc}") from None
    legacy = {"sys_info", "pickle", "storages", "tensors"}
    return "pytorch-legacy-tar" if legacy <= {n.rsplit("/", 1)[-1] for n in names} else "tar"


def _check_entry(ctx: Context, info: tarfile.TarInfo, member: str) -> None:
    if _traversal(info.name):
        ctx.add(Verdict.MALICIOUS, f"path traversal in tar member name {info.name!r}", member=member, symbol=info.name)
    if info.issym() or info.islnk():
        target = info.linkname
        if _traversal(target):
            ctx.add(Verdict.MALICIOUS, f"tar link {info.name!r} points outside the archive ({target!r})",
                    member=member, symbol=info.name)  # fmt: skip
        else:
            ctx.add(Verdict.SUSPICIOUS, f"tar link member {info.name!r} -> {target!r}", member=member, symbol=info.name)
    elif info.ischr() or info.isblk() or info.isfifo():
        ctx.add(Verdict.SUSPICIOUS, f"tar device/FIFO member {info.name!r}", member=member, symbol=info.name)
