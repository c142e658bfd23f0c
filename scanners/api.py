"""The public entry points: scan a path, an open file or bytes; get a Report.

These never raise for bad input and never unpickle anything: every problem is a
finding, and anything that could not be analysed makes the verdict ``error`` or
worse. For untrusted input in a long-running service prefer
``scanners.sandbox.scan_path_sandboxed``, which runs this in a resource-limited
child process.
"""

from __future__ import annotations

import io
import os
import stat
from typing import BinaryIO

from scanners.engine import new_context
from scanners.limits import Limits
from scanners.report import Finding, Report, Verdict
from scanners.source import Reader, Window

SCANNER_NAME = "mir-pickle-scanner"


def _run(f: BinaryIO, size: int, path: str | None, limits: Limits | None) -> Report:
    report = Report(scanner=SCANNER_NAME, format="unknown", path=path)
    ctx = new_context(report, limits or Limits())
    try:
        report.format = ctx.scan_reader(Reader(Window(f, 0, size)), "", 0)
    except RecursionError:
        ctx.add(Verdict.ERROR, "structure nested too deeply to analyse", member="")
    except MemoryError:
        ctx.add(Verdict.ERROR, "out of memory while scanning", member="")
    except Exception as exc:
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        detail = lines[-1][:300] if lines else ""
        ctx.add(Verdict.ERROR, f"internal scanner error: {type(exc).__name__}: {detail}", member="")
    ctx.finish()
    return report


def scan_file(f: BinaryIO, *, name: str | None = None, limits: Limits | None = None) -> Report:
    """Scan a seekable binary file from its start to its end (the file position is not restored)."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(0)
    return _run(f, size, name, limits)


def scan_bytes(data: bytes, *, name: str | None = None, limits: Limits | None = None) -> Report:
    """Scan an in-memory blob."""
    return _run(io.BytesIO(data), len(data), name, limits)


def scan_path(path: str | os.PathLike[str], *, limits: Limits | None = None) -> Report:
    """Scan one regular file. Missing, unreadable or non-regular paths give an ``error`` report."""
    shown = os.fspath(path)
    try:
        # stat before open: opening a FIFO would block; fstat after: the file we opened is what we scan
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise IsADirectoryError(f"not a regular file: {shown}")
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise IsADirectoryError(f"not a regular file: {shown}")
            return _run(f, st.st_size, shown, limits)
    except OSError as exc:
        report = Report(scanner=SCANNER_NAME, format="unreadable", path=shown)
        report.add(Finding(Verdict.ERROR, f"cannot read {shown}: {exc.strerror or exc}"))
        return report
