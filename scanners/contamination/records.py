"""Stream text records out of dataset files: JSON lines, CSV, Parquet, plain text, or a directory of them.

Why streaming: a dataset upload can be many gigabytes, and the detectors only
need one record at a time. Memory is bounded by ``max_record_bytes`` (one line,
one CSV record, one whole-file text record) and, for Parquet, by one row group's
text column. Every malformed input raises ``RecordFormatError`` naming the file
and the line or row; nothing is silently skipped unless ``on_missing="skip"``
asks for records without the text field to be passed over.
"""

from __future__ import annotations

import csv
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import IO, Any, Literal

from scanners.contamination.errors import RecordFormatError
from scanners.contamination.sniff import RecordFormat, sniff_delimiter, sniff_file

DEFAULT_TEXT_FIELD = "text"
DEFAULT_MAX_RECORD_BYTES = 8 * 1024 * 1024
_PARQUET_BATCH_ROWS = 1024

TextUnit = Literal["line", "paragraph", "file"]
WRAP_SAMPLE_BYTES = 64 * 1024
MAX_WRAP_WIDTH = 200
OnMissing = Literal["error", "skip"]


@dataclass(frozen=True, slots=True)
class Record:
    """One text record and where it came from (for examples in reports and error messages).

    ``source`` is the file (relative to the dataset root when a directory is
    read), ``line`` the 1-based physical line where the record starts (None for
    Parquet), ``row`` its 1-based ordinal among the file's records. ``origin``
    is the value of ``ReadOptions.origin_field`` where the record has one (for
    example ``"human"`` for a human record inside generated data).
    """

    text: str
    source: str
    row: int
    line: int | None = None
    origin: str | None = None  # the record's ``origin_field`` value, when asked for and a string

    @property
    def location(self) -> str:
        if self.line is not None:
            return f"{self.source}:{self.line}"
        return f"{self.source}#row{self.row}"


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How to find the text in each record; shared by every file of a dataset."""

    text_field: str = DEFAULT_TEXT_FIELD
    text_unit: TextUnit = "line"
    format: RecordFormat | None = None
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    on_missing: OnMissing = "error"
    include_hidden: bool = False
    origin_field: str | None = None

    def __post_init__(self) -> None:
        if not self.text_field:
            raise ValueError("text_field must not be empty")
        if self.origin_field is not None and (not self.origin_field or self.origin_field == self.text_field):
            raise ValueError("origin_field must be a non-empty field other than text_field")
        if self.text_unit not in ("line", "paragraph", "file"):
            raise ValueError(f"text_unit must be 'line', 'paragraph' or 'file', not {self.text_unit!r}")
        if self.on_missing not in ("error", "skip"):
            raise ValueError(f"on_missing must be 'error' or 'skip', not {self.on_missing!r}")
        if self.max_record_bytes < 1:
            raise ValueError("max_record_bytes must be positive")


def read_records(
    path: str | Path,
    *,
    text_field: str = DEFAULT_TEXT_FIELD,
    text_unit: TextUnit = "line",
    format: RecordFormat | str | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    on_missing: OnMissing = "error",
    include_hidden: bool = False,
    origin_field: str | None = None,
) -> Iterator[Record]:
    """Yield the text records of a file or of every file under a directory (sorted, recursive).

    ``text_field`` names the JSON lines field (a dotted path such as
    ``meta.body`` or ``messages.0.content`` reaches into nested objects and
    lists), the CSV column or the Parquet column (dotted into struct columns).
    ``text_unit`` says whether a plain text file holds one record per line
    (blank lines skipped), one per paragraph (lines up to a blank line, joined
    with spaces) or is one record. With ``line``, a file that is hard-wrapped
    (see ``_hard_wrapped``) is read by paragraph anyway: a record wrapped at 80
    columns is one record, not a dozen fragments. ``format`` overrides detection for
    every file (useful for prose that happens to look like CSV). In a directory,
    files and folders whose name starts with a dot are skipped unless
    ``include_hidden``; ``origin_field`` names an optional top-level JSON lines
    field, CSV column or Parquet column whose string value becomes
    ``Record.origin`` (a record without it has None); symbolic links and special files are refused, since a
    link could pull in files from outside the dataset.
    """
    options = ReadOptions(
        text_field=text_field,
        text_unit=text_unit,
        format=RecordFormat(format) if format is not None else None,
        max_record_bytes=max_record_bytes,
        on_missing=on_missing,
        include_hidden=include_hidden,
        origin_field=origin_field,
    )
    root = Path(path)
    try:
        st = os.stat(root)
    except OSError as exc:
        raise RecordFormatError(root, f"cannot open: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(st.st_mode):
        for file_path, rel in iter_dataset_files(root, include_hidden=options.include_hidden):
            yield from read_file_records(file_path, options, source=rel)
    elif stat.S_ISREG(st.st_mode):
        yield from read_file_records(root, options, source=root.name)
    else:
        raise RecordFormatError(root, "not a regular file or directory")


def iter_dataset_files(root: Path, *, include_hidden: bool = False) -> Iterator[tuple[Path, str]]:
    """Regular files under ``root`` in a stable order, with their '/'-separated relative paths."""
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise RecordFormatError(directory, f"cannot list directory: {exc.strerror or exc}") from exc
        subdirs: list[tuple[Path, str]] = []
        for entry in entries:
            if entry.name.startswith(".") and not include_hidden:
                continue
            rel = f"{prefix}{entry.name}"
            if entry.is_symlink():
                raise RecordFormatError(entry.path, "symbolic links are not allowed inside a dataset")
            if entry.is_dir(follow_symlinks=False):
                subdirs.append((Path(entry.path), rel + "/"))
            elif entry.is_file(follow_symlinks=False):
                yield Path(entry.path), rel
            else:
                raise RecordFormatError(entry.path, "not a regular file")
        stack.extend(reversed(subdirs))


def read_file_records(path: Path, options: ReadOptions, *, source: str) -> Iterator[Record]:
    """The records of one file, in the format given by ``options`` or detected from its content."""
    if options.format is None:
        sniffed = sniff_file(path)
        fmt, delimiter = sniffed.format, sniffed.delimiter
    else:
        fmt = options.format
        delimiter = sniff_delimiter(path) if fmt is RecordFormat.CSV else None
    if fmt is RecordFormat.PARQUET:
        yield from _read_parquet(path, options, source)
        return
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the with below; open errors are reported
    except OSError as exc:
        raise RecordFormatError(path, f"cannot open: {exc.strerror or exc}") from exc
    with fh:
        lines = _LineReader(fh, path, options.max_record_bytes)
        if fmt is RecordFormat.JSONL:
            yield from _read_jsonl(lines, path, options, source)
        elif fmt is RecordFormat.CSV:
            yield from _read_csv(lines, path, options, source, delimiter or ",")
        elif options.text_unit == "file":
            yield from _read_whole_text(fh, path, options, source)
        elif options.text_unit == "paragraph" or _hard_wrapped(_peek(fh, path)):
            yield from _read_paragraphs(lines, path, options, source)
        else:
            yield from _read_text_lines(lines, source)


class _LineReader:
    """UTF-8 lines of a binary file, each bounded by ``limit`` bytes, with the current line number.

    Keeps the line terminators (the csv module needs them to read quoted
    newlines) and drops a leading byte-order mark.
    """

    def __init__(self, fh: IO[bytes], path: Path, limit: int) -> None:
        self._fh = fh
        self._path = path
        self._limit = limit
        self.line_no = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        try:
            raw = self._fh.readline(self._limit + 1)
        except OSError as exc:
            raise RecordFormatError(self._path, f"read failed: {exc.strerror or exc}", line=self.line_no + 1) from exc
        if not raw:
            raise StopIteration
        self.line_no += 1
        if len(raw) > self._limit and not raw.endswith(b"\n"):
            raise RecordFormatError(
                self._path, f"line longer than the {self._limit}-byte record limit", line=self.line_no
            )
        if self.line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordFormatError(
                self._path, f"not valid UTF-8 (byte {exc.start} of the line)", line=self.line_no
            ) from exc


def _read_text_lines(lines: _LineReader, source: str) -> Iterator[Record]:
    row = 0
    for text in lines:
        text = text.rstrip("\r\n")
        if not text.strip():
            continue
        row += 1
        yield Record(text=text, source=source, row=row, line=lines.line_no)


def _peek(fh: IO[bytes], path: Path) -> list[str]:
    """The first lines of a text file (up to ``WRAP_SAMPLE_BYTES``), the file position left at the start."""
    try:
        raw = fh.read(WRAP_SAMPLE_BYTES)
        fh.seek(0)
    except OSError as exc:
        raise RecordFormatError(path, f"read failed: {exc.strerror or exc}") from exc
    lines = raw.decode("utf-8", errors="replace").splitlines()
    return lines[:-1] if len(raw) == WRAP_SAMPLE_BYTES else lines  # the last one may be cut short


def _hard_wrapped(lines: list[str]) -> bool:
    """Whether text lines look wrapped at a fixed width rather than one record each.

    A wrapped line is one whose successor's first word would not have fitted after it within the widest
    line's width (at most ``MAX_WRAP_WIDTH``): that is exactly where a wrapping tool breaks. The file counts
    as wrapped when at least 3 lines are followed by a non-blank line and 80 % of those break that way. A
    file with one record per line fails the test: its records end wherever they end, not at a width.
    """
    body = [line.rstrip() for line in lines]
    width = max((len(line) for line in body), default=0)
    if not 20 <= width <= MAX_WRAP_WIDTH:
        return False
    pairs = wrapped = 0
    for line, following in pairwise(body):
        if not line.strip() or not following.strip():
            continue
        pairs += 1
        if len(line) + 1 + len(following.split()[0]) > width:
            wrapped += 1
    return pairs >= 3 and wrapped >= 0.8 * pairs


def _read_paragraphs(lines: _LineReader, path: Path, options: ReadOptions, source: str) -> Iterator[Record]:
    """Records separated by blank lines, their lines joined with single spaces. A paragraph longer than
    ``max_record_bytes`` (a wrapped book without blank lines) is cut into records at line boundaries: memory
    stays bounded and the text is still read, not refused."""
    row = 0
    parts: list[str] = []
    size = 0
    start = 0
    for text in lines:
        text = text.strip()
        length = len(text.encode("utf-8")) + 1
        if text and parts and size + length > options.max_record_bytes:
            row += 1
            yield Record(text=" ".join(parts), source=source, row=row, line=start)
            parts, size = [], 0
        if text:
            if not parts:
                start = lines.line_no
            parts.append(text)
            size += length
            continue
        if parts:
            row += 1
            yield Record(text=" ".join(parts), source=source, row=row, line=start)
            parts, size = [], 0
    if parts:
        yield Record(text=" ".join(parts), source=source, row=row + 1, line=start)


def _read_whole_text(fh: IO[bytes], path: Path, options: ReadOptions, source: str) -> Iterator[Record]:
    try:
        raw = fh.read(options.max_record_bytes + 1)
    except OSError as exc:
        raise RecordFormatError(path, f"read failed: {exc.strerror or exc}") from exc
    if len(raw) > options.max_record_bytes:
        raise RecordFormatError(path, f"file larger than the {options.max_record_bytes}-byte record limit")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise RecordFormatError(path, "not valid UTF-8", line=line) from exc
    if text.strip():
        yield Record(text=text, source=source, row=1, line=1)


def _read_jsonl(lines: _LineReader, path: Path, options: ReadOptions, source: str) -> Iterator[Record]:
    row = 0
    for raw in lines:
        if not raw.strip():
            continue
        row += 1
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise RecordFormatError(path, f"invalid JSON: {exc.msg} (column {exc.colno})", line=lines.line_no) from exc
        except (ValueError, RecursionError) as exc:  # over-long integers, absurd nesting
            raise RecordFormatError(path, f"invalid JSON: {exc}", line=lines.line_no) from exc
        if not isinstance(value, dict):
            raise RecordFormatError(
                path, f"JSON lines record is {_json_type(value)}, not an object", line=lines.line_no
            )
        text = _extract_text(value, options, path=path, line=lines.line_no, row=None)
        if text is not None:
            origin = value.get(options.origin_field) if options.origin_field is not None else None
            yield Record(text=text, source=source, row=row, line=lines.line_no,
                         origin=origin if isinstance(origin, str) else None)


def _read_csv(
    lines: _LineReader, path: Path, options: ReadOptions, source: str, delimiter: str
) -> Iterator[Record]:
    reader = csv.reader(lines, delimiter=delimiter, quotechar='"', doublequote=True, strict=True)
    header: list[str] | None = None
    column = origin_column = -1
    row = 0
    start_line = 1
    while True:
        start_line = lines.line_no + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise RecordFormatError(path, f"malformed CSV: {exc}", line=start_line) from exc
        if not cells:
            continue
        if header is None:
            header = cells
            if options.text_field not in header:
                shown = ", ".join(repr(c) for c in header[:20]) + (" ..." if len(header) > 20 else "")
                raise RecordFormatError(
                    path, f"CSV header has no column {options.text_field!r} (columns: {shown})", line=start_line
                )
            column = header.index(options.text_field)
            origin_column = header.index(options.origin_field) if options.origin_field in header else -1
            continue
        row += 1
        if len(cells) != len(header):
            raise RecordFormatError(
                path, f"CSV row has {len(cells)} cells, the header has {len(header)}", line=start_line, row=row
            )
        text = cells[column]
        if not text.strip():
            if options.on_missing == "skip":
                continue
            raise RecordFormatError(path, f"empty {options.text_field!r} cell", line=start_line, row=row)
        yield Record(text=text, source=source, row=row, line=start_line,
                     origin=cells[origin_column] if origin_column >= 0 else None)


def _read_parquet(path: Path, options: ReadOptions, source: str) -> Iterator[Record]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a declared dependency
        raise RecordFormatError(path, "Parquet support needs the pyarrow package") from exc
    try:
        pf = pq.ParquetFile(path)
        names = list(pf.schema_arrow.names)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise RecordFormatError(path, f"unreadable Parquet file: {exc}") from exc
    field = options.text_field
    if field in names:
        column, rest = field, ""
    else:
        head, _, rest = field.partition(".")
        if head not in names:
            shown = ", ".join(repr(n) for n in names[:20]) + (" ..." if len(names) > 20 else "")
            raise RecordFormatError(path, f"Parquet file has no column {field!r} (columns: {shown})")
        column = head
    sub_options = ReadOptions(
        text_field=rest or field,
        on_missing=options.on_missing,
        max_record_bytes=options.max_record_bytes,
    )
    row = 0
    origin = options.origin_field if options.origin_field in names and options.origin_field != column else None
    try:
        batches = pf.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=[column, origin] if origin else [column])
        for batch in batches:
            origins = batch.column(1).to_pylist() if origin else [None] * batch.num_rows
            for value, mark in zip(batch.column(0).to_pylist(), origins, strict=True):
                row += 1
                if rest:
                    text = _extract_text(value, sub_options, path=path, line=None, row=row, prefix=column)
                else:
                    text = _check_text(value, sub_options, path=path, line=None, row=row, name=column)
                if text is not None:
                    yield Record(text=text, source=source, row=row, origin=mark if isinstance(mark, str) else None)
    except RecordFormatError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:  # ValueError: e.g. invalid UTF-8 in a string column
        raise RecordFormatError(path, f"unreadable Parquet data: {exc}", row=row + 1) from exc


def _extract_text(
    value: Any, options: ReadOptions, *, path: Path, line: int | None, row: int | None, prefix: str = ""
) -> str | None:
    """Follow ``options.text_field`` (literal key first, then dotted segments) into nested objects and lists."""
    field = options.text_field
    shown = f"{prefix}.{field}" if prefix else field
    if isinstance(value, dict) and field in value:
        return _check_text(value[field], options, path=path, line=line, row=row, name=shown)
    current = value
    for segment in field.split("."):
        if isinstance(current, dict) and segment in current:
            current = current[segment]
        elif isinstance(current, list) and segment.isdecimal() and int(segment) < len(current):
            current = current[int(segment)]
        else:
            if options.on_missing == "skip":
                return None
            raise RecordFormatError(path, f"record has no field {shown!r}", line=line, row=row)
    return _check_text(current, options, path=path, line=line, row=row, name=shown)


def _check_text(
    value: Any, options: ReadOptions, *, path: Path, line: int | None, row: int | None, name: str
) -> str | None:
    if isinstance(value, str):
        if len(value) > options.max_record_bytes:
            raise RecordFormatError(
                path, f"field {name!r} longer than the {options.max_record_bytes}-byte record limit", line=line, row=row
            )
        return value
    if value is None and options.on_missing == "skip":
        return None
    raise RecordFormatError(path, f"field {name!r} is {_json_type(value)}, not a string", line=line, row=row)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"
