"""Record reading: format sniffing by content, every format, directories, and bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanners.contamination import RecordFormat, RecordFormatError, read_records, sniff_file
from scanners.contamination.sniff import SNIFF_BYTES, sniff_bytes


def texts(path: Path, **kwargs: object) -> list[str]:
    return [r.text for r in read_records(path, **kwargs)]  # type: ignore[arg-type]


# ---------------------------------------------------------------- sniffing


def test_sniff_ignores_file_names(tmp_path: Path) -> None:
    jsonl = tmp_path / "data.csv"
    jsonl.write_text('{"text": "a"}\n{"text": "b"}\n')
    csv_file = tmp_path / "data.jsonl"
    csv_file.write_text("id,text\n1,hello\n2,world\n")
    text = tmp_path / "data.parquet"
    text.write_text("just some prose\nand more prose\n")
    parquet = tmp_path / "data.txt"
    pq.write_table(pa.table({"text": ["x"]}), parquet)
    assert sniff_file(jsonl).format is RecordFormat.JSONL
    assert sniff_file(csv_file).format is RecordFormat.CSV
    assert sniff_file(text).format is RecordFormat.TEXT
    assert sniff_file(parquet).format is RecordFormat.PARQUET


def test_sniff_csv_dialects(tmp_path: Path) -> None:
    tsv = tmp_path / "a"
    tsv.write_text("id\ttext\n1\thello, world\n2\tbye\n")
    assert sniff_file(tsv) == sniff_file(tsv).__class__(RecordFormat.CSV, "\t")
    assert texts(tsv) == ["hello, world", "bye"]
    semi = tmp_path / "b"
    semi.write_text('text;label\n"quoted; with delimiter";1\nplain;0\n')
    assert sniff_file(semi).delimiter == ";"
    assert texts(semi) == ["quoted; with delimiter", "plain"]


def test_prose_with_commas_is_text(tmp_path: Path) -> None:
    prose = tmp_path / "p"
    prose.write_text(
        "It was the best of times, it was the worst of times, it was the age of wisdom.\n"
        "There were a king with a large jaw and a queen with a plain face, on the throne.\n"
        "In both countries it was clearer than crystal.\n"
    )
    assert sniff_file(prose).format is RecordFormat.TEXT


def test_sniff_refuses_binary_and_bad_utf8(tmp_path: Path) -> None:
    binary = tmp_path / "b"
    binary.write_bytes(b"line one\nline\x00two\n")
    with pytest.raises(RecordFormatError, match=r"b:2: binary content"):
        sniff_file(binary)
    latin = tmp_path / "l"
    latin.write_bytes(b"ok\ncaf\xe9\n")
    with pytest.raises(RecordFormatError, match=r"l:2: not valid UTF-8"):
        sniff_file(latin)


def test_sniff_long_first_line(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_text(json.dumps({"text": "word " * (SNIFF_BYTES // 4)}) + "\n")
    assert sniff_file(big).format is RecordFormat.JSONL
    assert len(texts(big)[0]) > SNIFF_BYTES


def test_broken_first_json_line_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "j"
    f.write_text('{"text": "unterminated\n')
    with pytest.raises(RecordFormatError, match=r"j:1: starts like JSON lines"):
        sniff_file(f)


# ---------------------------------------------------------------- formats


def test_jsonl_nested_fields(tmp_path: Path) -> None:
    f = tmp_path / "d"
    rows = [
        {"meta": {"body": "first"}, "messages": [{"content": "m0"}, {"content": "m1"}]},
        {"meta": {"body": "second"}, "messages": [{"content": "n0"}, {"content": "n1"}]},
        {"meta.body": "literal dotted key wins", "messages": [{"content": "o0"}, {"content": "o1"}]},
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert texts(f, text_field="meta.body") == ["first", "second", "literal dotted key wins"]
    assert texts(f, text_field="messages.1.content") == ["m1", "n1", "o1"]
    records = list(read_records(f, text_field="meta.body"))
    assert [(r.row, r.line) for r in records] == [(1, 1), (2, 2), (3, 3)]
    assert records[0].location == "d:1"


def test_jsonl_errors_name_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "ok"}\n{"text": 3}\n')
    with pytest.raises(RecordFormatError, match=r"d.jsonl:2: field 'text' is a number"):
        texts(f)
    f.write_text('{"text": "ok"}\n{"other": "x"}\n')
    with pytest.raises(RecordFormatError, match=r"d.jsonl:2: record has no field 'text'"):
        texts(f)
    assert texts(f, on_missing="skip") == ["ok"]
    f.write_text('{"text": "ok"}\n\n{"text": oops}\n')
    with pytest.raises(RecordFormatError, match=r"d.jsonl:3: invalid JSON"):
        texts(f)
    f.write_text('{"text": "ok"}\n[1, 2]\n')
    with pytest.raises(RecordFormatError, match=r"d.jsonl:2: JSON lines record is an array"):
        texts(f)
    f.write_text('{"text": "ok"}\n' + "[" * 100_000 + "\n")
    with pytest.raises(RecordFormatError, match=r"d.jsonl:2: invalid JSON"):
        texts(f)
    f.write_bytes(b'{"text": "ok"}\n{"text": "\xff"}\n')
    with pytest.raises(RecordFormatError, match=r"d.jsonl:2: not valid UTF-8"):
        texts(f, format="jsonl")


def test_record_size_limit(tmp_path: Path) -> None:
    f = tmp_path / "t"
    f.write_text("short line\n" + "x" * 5000 + "\n")
    with pytest.raises(RecordFormatError, match=r"t:2: line longer than the 1000-byte record limit"):
        texts(f, max_record_bytes=1000)
    with pytest.raises(RecordFormatError, match=r"file larger than the 1000-byte record limit"):
        texts(f, max_record_bytes=1000, text_unit="file")


def test_csv_rows_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "c"
    f.write_text('id,text\n1,"multi\nline"\n2,plain\n', newline="")
    records = list(read_records(f))
    assert [(r.text, r.row, r.line) for r in records] == [("multi\nline", 1, 2), ("plain", 2, 4)]
    f.write_text("id,text\n1,a\n2,b,extra\n")
    with pytest.raises(RecordFormatError, match=r"c:3 \(row 2\): CSV row has 3 cells"):
        texts(f, format="csv")
    f.write_text("id,text\n" + "".join(f"{i},row {i}\n" for i in range(20)) + "20,b,extra\n")
    with pytest.raises(RecordFormatError, match=r"c:22 \(row 21\): CSV row has 3 cells"):
        texts(f)
    f.write_text("id,body\n1,a\n2,b\n")
    with pytest.raises(RecordFormatError, match=r"c:1: CSV header has no column 'text' \(columns: 'id', 'body'\)"):
        texts(f)
    assert texts(f, text_field="body") == ["a", "b"]
    f.write_text('id,text\n1,a\n2,"unterminated\n')
    with pytest.raises(RecordFormatError, match=r"c:3: malformed CSV"):
        texts(f)


def test_plain_text_lines_and_files(tmp_path: Path) -> None:
    f = tmp_path / "t"
    f.write_bytes(b"\xef\xbb\xbffirst line\r\n\r\n   \nsecond line\n")
    records = list(read_records(f))
    assert [(r.text, r.row, r.line) for r in records] == [("first line", 1, 1), ("second line", 2, 4)]
    assert texts(f, text_unit="file") == ["first line\r\n\r\n   \nsecond line\n"]
    empty = tmp_path / "e"
    empty.write_bytes(b"")
    assert texts(empty) == []


def test_parquet_columns_structs_and_nulls(tmp_path: Path) -> None:
    f = tmp_path / "p"
    table = pa.table(
        {
            "text": ["a", "b", None],
            "meta": [{"body": "x"}, {"body": "y"}, {"body": "z"}],
            "n": [1, 2, 3],
        }
    )
    pq.write_table(table, f, row_group_size=2)
    assert texts(f, text_field="meta.body") == ["x", "y", "z"]
    with pytest.raises(RecordFormatError, match=r"p \(row 3\): field 'text' is null"):
        texts(f)
    assert texts(f, on_missing="skip") == ["a", "b"]
    with pytest.raises(RecordFormatError, match=r"p \(row 1\): field 'n' is a number"):
        texts(f, text_field="n")
    with pytest.raises(RecordFormatError, match=r"p: Parquet file has no column 'body'"):
        texts(f, text_field="body")


def test_truncated_parquet_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "p"
    pq.write_table(pa.table({"text": ["a"] * 100}), f)
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(RecordFormatError, match=r"^.*p: unreadable Parquet"):
        texts(f)


def test_directory_of_mixed_formats(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("line b\n")
    (tmp_path / "a").write_text('{"text": "json a"}\n')
    (tmp_path / "sub" / "c").write_text("id,text\n1,csv c\n")
    pq.write_table(pa.table({"text": ["parquet d"]}), tmp_path / "sub" / "d")
    (tmp_path / ".hidden").write_text("never read\n")
    records = list(read_records(tmp_path))
    assert [(r.source, r.text) for r in records] == [
        ("a", "json a"),
        ("b.txt", "line b"),
        ("sub/c", "csv c"),
        ("sub/d", "parquet d"),
    ]
    assert "never read" in texts(tmp_path, include_hidden=True)


def test_directory_refuses_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("secret\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok").write_text("fine\n")
    os.symlink(outside, data / "link")
    with pytest.raises(RecordFormatError, match=r"link: symbolic links are not allowed"):
        texts(data)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(RecordFormatError, match=r"nope: cannot open"):
        texts(tmp_path / "nope")


def test_forced_format(tmp_path: Path) -> None:
    f = tmp_path / "prose"
    f.write_text("alpha,beta\ngamma,delta\n")
    assert sniff_file(f).format is RecordFormat.CSV
    assert texts(f, format="text") == ["alpha,beta", "gamma,delta"]


# ---------------------------------------------------------------- properties

_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(lambda s: s.strip())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(_text, min_size=1, max_size=8))
def test_jsonl_roundtrip(tmp_path: Path, values: list[str]) -> None:
    f = tmp_path / "rt.jsonl"
    f.write_text("".join(json.dumps({"text": v, "k": {"v": v}}) + "\n" for v in values), encoding="utf-8")
    assert texts(f) == values
    assert texts(f, text_field="k.v") == values


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(_text.filter(lambda s: "\x00" not in s and "\r" not in s), min_size=1, max_size=8))
def test_csv_roundtrip(tmp_path: Path, values: list[str]) -> None:
    import csv

    f = tmp_path / "rt.csv"
    with open(f, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_ALL)
        writer.writerow(["id", "text"])
        for i, v in enumerate(values):
            writer.writerow([str(i), v])
    assert texts(f, format="csv") == values


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass")))
def test_arbitrary_bytes_never_escape_as_other_errors(tmp_path: Path, data: bytes) -> None:
    """Whatever the bytes, reading either yields string records or raises RecordFormatError."""
    f = tmp_path / "fuzz"
    f.write_bytes(data)
    try:
        sniff_bytes(data, at_eof=True)
        for record in read_records(f):
            assert isinstance(record.text, str) and record.text.strip()
    except RecordFormatError as exc:
        assert str(exc).startswith(str(f)) or str(exc).startswith("<bytes>")


def _parquet_bytes() -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"text": ["alpha", "beta", "gamma"], "n": [1, 2, 3]}), sink)
    return bytes(sink.getvalue().to_pybytes())


_PARQUET = _parquet_bytes()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(max_size=200).map(lambda b: b"PAR1" + b)
    | st.tuples(st.integers(0, len(_PARQUET)), st.binary(max_size=16)).map(lambda t: _PARQUET[: t[0]] + t[1])
    | st.tuples(st.integers(4, len(_PARQUET) - 1), st.integers(0, 255)).map(
        lambda t: _PARQUET[: t[0]] + bytes([t[1]]) + _PARQUET[t[0] + 1 :]
    )
)
def test_damaged_parquet_never_escapes(tmp_path: Path, data: bytes) -> None:
    f = tmp_path / "fuzz.parquet"
    f.write_bytes(data)
    try:
        for record in read_records(f):
            assert isinstance(record.text, str)
    except RecordFormatError as exc:
        assert str(exc).startswith(str(f))


def test_origin_field_in_every_format(tmp_path: Path) -> None:
    """A per-record origin (``mir_origin``: "human" marks human records inside generated data) is read from
    JSON lines, CSV and Parquet; records without it, or with a non-string value, have None."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [("first text", "human"), ("second text", None), ("third text", "generated")]
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t, **({"mir_origin": o} if o else {"mir_origin": 3})})
                               for t, o in rows) + "\n")
    csv_file = tmp_path / "b.csv"
    csv_file.write_text("text,mir_origin\n" + "".join(f"{t},{o or ''}\n" for t, o in rows))
    parquet = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": [t for t, _ in rows], "mir_origin": [o for _, o in rows]}), parquet)
    for path, missing in ((jsonl, None), (csv_file, ""), (parquet, None)):
        records = list(read_records(path, origin_field="mir_origin"))
        assert [r.text for r in records] == [t for t, _ in rows]
        assert [r.origin for r in records] == ["human", missing, "generated"], path
        assert all(r.origin is None for r in read_records(path))  # not asked for: not read
    with pytest.raises(ValueError, match="origin_field"):
        list(read_records(jsonl, origin_field="text"))
