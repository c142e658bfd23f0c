"""Detect a dataset file's record format from its first bytes, never from its name.

Order of tests, each on a bounded sample (``SNIFF_BYTES``):

1. Parquet: the ``PAR1`` magic.
2. Binary (a NUL byte) or invalid UTF-8: refused, naming the line.
3. JSON lines: the first non-blank line is a JSON object. A first line that
   starts with ``{`` but is not one is refused rather than read as prose.
4. CSV: ``csv.Sniffer`` finds a delimiter among ``, TAB ; |`` and at least a
   header and one data row parse with the same number (>= 2) of cells, the
   header cells being distinct and non-empty. Only the delimiter is taken from
   the sniffer; quoting is RFC 4180 (``"``), because the sniffer readily takes
   an apostrophe in prose for a quote character.
5. Otherwise UTF-8 text.
"""

from __future__ import annotations

import codecs
import csv
import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from scanners.contamination.errors import RecordFormatError

SNIFF_BYTES = 64 * 1024
PARQUET_MAGIC = b"PAR1"
CSV_DELIMITERS = ",\t;|"
_CSV_SAMPLE_LINES = 50


class RecordFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    PARQUET = "parquet"
    TEXT = "text"


@dataclass(frozen=True, slots=True)
class SniffResult:
    """The detected format, and for CSV the delimiter found."""

    format: RecordFormat
    delimiter: str | None = None


def sniff_file(path: str | Path) -> SniffResult:
    """Read at most ``SNIFF_BYTES`` of ``path`` and tell which record format it holds."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
            at_eof = not fh.read(1)
    except OSError as exc:
        raise RecordFormatError(path, f"cannot read file: {exc.strerror or exc}") from exc
    return sniff_bytes(head, at_eof=at_eof, name=str(path))


def sniff_bytes(head: bytes, *, at_eof: bool, name: str = "<bytes>") -> SniffResult:
    """Classify a sample; ``at_eof`` says whether it is the whole file (its last line is complete)."""
    if head.startswith(PARQUET_MAGIC):
        return SniffResult(RecordFormat.PARQUET)
    if b"\x00" in head:
        line = head.count(b"\n", 0, head.index(b"\x00")) + 1
        raise RecordFormatError(
            name, "binary content (NUL byte): not JSON lines, CSV, Parquet or UTF-8 text", line=line
        )
    text = _decode_sample(head, at_eof=at_eof, name=name)
    lines = text.splitlines(keepends=True)
    if not at_eof and lines:
        lines.pop()  # possibly cut in the middle
    stripped = [ln.strip() for ln in lines]
    first = next((i for i, s in enumerate(stripped) if s), None)
    if first is None:
        if not at_eof and text.lstrip().startswith("{"):
            # The first line alone is longer than the sample: only JSON lines records get that long
            # and start with a brace; the reader checks every line anyway.
            return SniffResult(RecordFormat.JSONL)
        return SniffResult(RecordFormat.TEXT)
    if stripped[first].startswith("{"):
        _require_json_object(stripped[first], name=name, line=first + 1)
        return SniffResult(RecordFormat.JSONL)
    delimiter = _sniff_csv(lines)
    if delimiter is not None:
        return SniffResult(RecordFormat.CSV, delimiter)
    return SniffResult(RecordFormat.TEXT)


def sniff_delimiter(path: str | Path) -> str:
    """The CSV delimiter of a file the caller declared to be CSV (``,`` when nothing better is found)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
            at_eof = not fh.read(1)
    except OSError as exc:
        raise RecordFormatError(path, f"cannot read file: {exc.strerror or exc}") from exc
    lines = _decode_sample(head, at_eof=at_eof, name=str(path)).splitlines(keepends=True)
    if not at_eof and lines:
        lines.pop()
    return _sniff_csv(lines) or ","


def _decode_sample(head: bytes, *, at_eof: bool, name: str) -> str:
    decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
    try:
        return decoder.decode(head, final=at_eof)
    except UnicodeDecodeError as exc:
        line = head.count(b"\n", 0, exc.start) + 1
        raise RecordFormatError(name, f"not valid UTF-8 (byte offset {exc.start})", line=line) from exc


def _require_json_object(line_text: str, *, name: str, line: int) -> None:
    try:
        value = json.loads(line_text)
    except (ValueError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise RecordFormatError(
            name, f"starts like JSON lines but is not valid JSON ({reason})", line=line
        ) from exc
    if not isinstance(value, dict):
        raise RecordFormatError(name, "JSON lines records must be objects", line=line)


def _sniff_csv(lines: list[str]) -> str | None:
    sample_lines = [ln for ln in lines[:_CSV_SAMPLE_LINES] if ln.strip()]
    if len(sample_lines) < 2:
        return None
    sample = "".join(sample_lines)
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:
        return None
    rows: list[list[str]] = []
    reader = csv.reader(sample_lines, delimiter=delimiter, quotechar='"', strict=True)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            # A quoted field cut by the sample boundary, or a malformed row: judge by the rows before it
            # (the reader then reports a real error with its line number).
            break
        if row:
            rows.append(row)
    if len(rows) < 2:
        return None
    header = rows[0]
    width = len(header)
    if width < 2 or any(not cell.strip() for cell in header) or len(set(header)) != width:
        return None
    # The last sample row may be a quoted field cut by the sample boundary.
    body = rows[1:-1] if len(rows) > 2 else rows[1:]
    if any(len(row) != width for row in body):
        return None
    return delimiter
