"""One scan's state and its recursion: findings go to the report, every nested byte source is sniffed again.

Format scanners receive a :class:`Context` and call back into it for whatever they contain (zip members,
decompressed streams, nested pickle payloads), so detection is by content at every level and the depth limit
and decompression budget apply to all of them. Which scanner handles which format is the engine's table
(:mod:`scanners.engine`), handed to the context when a scan starts, so no format module imports the engine.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import struct
from collections.abc import Callable

from scanners.compression import Budget
from scanners.errors import BombError, ScanError
from scanners.limits import Limits
from scanners.pickle_ops import VALID_OPCODES
from scanners.pickle_scan import PickleAnalyzer
from scanners.report import Finding, Report, Verdict, worst
from scanners.sniff import SNIFF_BYTES, Kind, sniff, text_ok
from scanners.source import CHUNK, Reader, Window

Handler = Callable[["Context", Reader, str, int], str]

PROBE_BYTES = 1024 * 1024
"""How much of a non-pickle file is also read as a pickle, to catch pickle polyglots."""


def child(member: str, name: str) -> str:
    """Name of something inside ``member`` (``outer!inner``, like jar URLs)."""
    return f"{member}!{name}" if member else name


class Context:
    """One scan: limits, the decompression budget, and the report findings go to."""

    def __init__(self, report: Report, limits: Limits, handlers: Callable[[Kind], Handler]) -> None:
        self.report = report
        self.limits = limits
        self._handlers = handlers  # kind -> format scanner: the engine's table, given here so no module cycles
        self.budget = Budget(limits)
        self.omitted: list[Verdict] = []

    # -- findings ---------------------------------------------------------------------------------
    def add_finding(self, finding: Finding) -> None:
        if len(self.report.findings) < self.limits.max_findings:
            self.report.add(finding)
        else:
            self.omitted.append(finding.severity)
            self.report.verdict = worst([self.report.verdict, finding.severity])

    def add(
        self,
        severity: Verdict,
        message: str,
        *,
        member: str,
        offset: int | None = None,
        symbol: str | None = None,
    ) -> None:
        self.add_finding(Finding(severity, message, member=member or None, offset=offset, symbol=symbol))

    def finish(self) -> None:
        if self.omitted:
            self.report.findings.append(
                Finding(worst(self.omitted), f"{len(self.omitted)} more findings omitted (limit reached)")
            )

    # -- dispatch ---------------------------------------------------------------------------------
    def scan_reader(self, reader: Reader, member: str, depth: int) -> str:
        """Scan everything ``reader`` yields as ``member``; returns the detected format label."""
        if depth > self.limits.max_depth:
            self.add(Verdict.ERROR, f"nesting deeper than {self.limits.max_depth} levels: not analysed", member=member)
            return "nested"
        kind = Kind.UNKNOWN
        try:
            head = reader.peek(SNIFF_BYTES)
            kind = sniff(head, reader.size)
            if reader.seekable and kind not in (Kind.PICKLE, Kind.MAYBE_PICKLE) and head and head[0] in VALID_OPCODES:
                self._probe_pickle(reader, member)
            start = reader.tell()
            label = self._handlers(kind)(self, reader, member, depth)
            rest = reader.window.sub(start, reader.window.length) if reader.window is not None else None
            if kind is not Kind.ZIP and rest is not None and has_zip_directory(rest):
                self._zip_view(rest, member, depth)
            return label
        except BombError as exc:
            self.add(Verdict.MALICIOUS, exc.message, member=member, offset=exc.offset)
        except ScanError as exc:
            self.add(Verdict.ERROR, f"{kind.value}: {exc.message}", member=member, offset=exc.offset)
        return kind.value

    def scan_payload(self, payload: bytes | Window, member: str, depth: int) -> str:
        """Scan a nested payload (bytes resolved from a pickle, or a window of the file)."""
        window = payload if isinstance(payload, Window) else Window(io.BytesIO(payload), 0, len(payload))
        return self.scan_reader(Reader(window), member, depth)

    def nested_callback(self, depth: int) -> Callable[[bytes | Window, str], None]:
        def scan(payload: bytes | Window, member: str) -> None:
            self.scan_payload(payload, member, depth + 1)

        return scan

    def _zip_view(self, window: Window, member: str, depth: int) -> None:
        """A file that is something else but also ends with a zip directory (a polyglot)."""
        self.add(Verdict.SUSPICIOUS, "polyglot: the file also ends with a zip directory; scanned as a zip too",
                 member=member)  # fmt: skip
        name = child(member, "<zip view>")
        try:
            self._handlers(Kind.ZIP)(self, Reader(window), name, depth + 1)
        except BombError as exc:
            self.add(Verdict.MALICIOUS, exc.message, member=name, offset=exc.offset)
        except ScanError as exc:
            self.add(Verdict.ERROR, f"zip: {exc.message}", member=name, offset=exc.offset)

    def _probe_pickle(self, reader: Reader, member: str) -> None:
        """Report malicious globals if the start of a non-pickle file also runs as a pickle."""
        assert reader.window is not None
        window = reader.window.sub(reader.tell(), PROBE_BYTES)
        found: list[Finding] = []
        with contextlib.suppress(ScanError):
            PickleAnalyzer(
                Reader(window), member=member, limits=self.limits, sink=found.append,
                report_threshold=Verdict.MALICIOUS,
            ).run()
        for f in found:
            self.add_finding(
                Finding(f.severity, f"polyglot: the file also parses as a pickle: {f.message}",
                        member=f.member, offset=f.offset, symbol=f.symbol)
            )  # fmt: skip


def has_zip_directory(window: Window) -> bool:
    """True if the window ends with a consistent end-of-central-directory record (comment included)."""
    if window.length < 22:
        return False
    tail_len = min(window.length, 22 + 0xFFFF)
    tail = window.read_at(window.length - tail_len, tail_len)
    pos = tail.rfind(b"PK\x05\x06")
    while pos >= 0:
        rec = tail[pos : pos + 22]
        if len(rec) == 22:
            _disk, _cd_disk, _here, entries, cd_size, cd_offset, comment_len = struct.unpack("<4xHHHHIIH", rec)
            eocd_at = window.length - tail_len + pos
            if pos + 22 + comment_len == len(tail) and entries > 0 and 0 < cd_size <= eocd_at:
                # zip64 archives put 76 bytes of their own records between the directory and this one
                starts = (eocd_at - cd_size, eocd_at - 76 - cd_size)
                if cd_offset == 0xFFFFFFFF or any(s >= 0 and window.read_at(s, 4) == b"PK\x01\x02" for s in starts):
                    return True
        pos = tail.rfind(b"PK\x05\x06", 0, pos)
    return False


def check_text_rest(ctx: Context, reader: Reader, member: str, sink: Callable[[str], None] | None = None) -> bool:
    """Read to the end; False (and a finding) if binary data follows. ``sink`` sees the decoded text."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    while True:
        offset = reader.tell()
        chunk = reader.read(CHUNK * 4)
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError:
            text = None
        if text is None or not text_ok(text):
            ctx.add(
                Verdict.SUSPICIOUS,
                f"unknown binary format: binary data after a text prefix near offset {offset} (not analysed)",
                member=member,
                offset=offset,
            )
            return False
        if sink is not None and text:
            sink(text)
        if not chunk:
            return True
