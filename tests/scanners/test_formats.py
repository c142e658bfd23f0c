"""Format detection and the non-pickle formats: npy, compression wrappers, safetensors, plain data."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from scanners import Limits, Verdict, scan_bytes, scan_file, scan_path
from scanners.sniff import Kind, sniff
from tests.scanners.corpus import Reduce, npy_bytes, os_system_pickle, safetensors_bytes


# -- sniffing ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "head,kind",
    [
        (b"", Kind.EMPTY),
        (b"PK\x03\x04rest", Kind.ZIP),
        (gzip.compress(b"x"), Kind.GZIP),
        (bz2.compress(b"x"), Kind.BZIP2),
        (lzma.compress(b"x"), Kind.XZ),
        (lzma.compress(b"x", format=lzma.FORMAT_ALONE), Kind.LZMA),
        (zlib.compress(b"hello"), Kind.ZLIB),
        (b"7z\xbc\xaf\x27\x1c\x00\x04", Kind.SEVENZIP),
        (b"\x28\xb5\x2f\xfd\x00", Kind.ZSTD),
        (b"\x04\x22\x4d\x18\x00", Kind.LZ4),
        (b"\x93NUMPY\x01\x00", Kind.NPY),
        (b"\x89HDF\r\n\x1a\n", Kind.HDF5),
        (b"GGUF\x03\x00\x00\x00", Kind.GGUF),
        (b"\x89PNG\r\n\x1a\n", Kind.IMAGE),
        (b"\x80\x02}q\x00.", Kind.PICKLE),
        (b"(dp0\n.", Kind.MAYBE_PICKLE),
        (b"{\"a\": 1}\n", Kind.TEXT),
        (b"\x00\x01\x02\x03binary", Kind.UNKNOWN),
        (safetensors_bytes({}, b""), Kind.SAFETENSORS),
    ],
)
def test_sniff_uses_content(head: bytes, kind: Kind) -> None:
    assert sniff(head, len(head)) is kind


def test_file_names_do_not_matter(tmp_path: Path) -> None:
    evil = os_system_pickle(2)
    for name in ("model.safetensors", "weights.npy", "readme.txt", "x.json", "noext"):
        (tmp_path / name).write_bytes(evil)
        assert scan_path(tmp_path / name).verdict is Verdict.MALICIOUS


@pytest.mark.parametrize(
    "data,what",
    [
        (b"\x28\xb5\x2f\xfd" + os.urandom(64), "zstandard"),
        (b"\x04\x22\x4d\x18" + os.urandom(64), "LZ4"),
    ],
)
def test_unsupported_containers_are_not_clean(data: bytes, what: str) -> None:
    report = scan_bytes(data)
    assert report.verdict is Verdict.SUSPICIOUS
    assert what in report.findings[0].message


def test_random_bytes_behind_a_7z_signature_are_an_error() -> None:
    report = scan_bytes(b"7z\xbc\xaf\x27\x1c\x00\x04" + os.urandom(64))
    assert (report.verdict, report.format) == (Verdict.ERROR, "7z"), report.findings


def test_unknown_binary_is_reported_as_such() -> None:
    report = scan_bytes(b"\x00" * 100)
    assert report.verdict is Verdict.SUSPICIOUS and report.format == "unknown"
    assert "unknown binary format" in report.findings[0].message


def test_text_with_a_binary_tail_is_not_clean() -> None:
    data = b"a plain line\n" * 1000 + b"\x00\x01\x02"
    assert scan_bytes(data).verdict is Verdict.SUSPICIOUS


@pytest.mark.parametrize("data", [b"", b"hello\n", "ünïcödé\n".encode(), b"GGUF\x03\x00\x00\x00" + b"\0" * 20])
def test_plain_data_is_clean(data: bytes) -> None:
    assert scan_bytes(data).verdict is Verdict.CLEAN


def test_paths_that_cannot_be_scanned_are_errors(tmp_path: Path) -> None:
    assert scan_path(tmp_path).verdict is Verdict.ERROR
    report = scan_path(tmp_path / "missing.pt")
    assert report.verdict is Verdict.ERROR and "missing.pt" in report.findings[0].message


def test_scan_file_reads_an_open_file(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(os_system_pickle(4))
    with path.open("rb") as f:
        assert scan_file(f, name="x").verdict is Verdict.MALICIOUS


# -- numpy ------------------------------------------------------------------------------------------------
def test_numeric_npy_is_clean_and_versions_are_read() -> None:
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    for version in ((1, 0), (2, 0), (3, 0)):
        buf = io.BytesIO()
        np.lib.format.write_array(buf, arr, version=version)
        assert scan_bytes(buf.getvalue()).verdict is Verdict.CLEAN, version


def test_object_npy_is_suspicious_with_the_reason() -> None:
    report = scan_bytes(npy_bytes(np.array([1, "a", None], dtype=object)))
    assert report.verdict is Verdict.SUSPICIOUS
    assert "allow_pickle" in report.findings[0].message


def test_object_npy_with_a_payload_is_malicious() -> None:
    report = scan_bytes(npy_bytes(np.array([Reduce(os.system, ("true",))], dtype=object)))
    assert report.verdict is Verdict.MALICIOUS


def test_npy_defects() -> None:
    good = npy_bytes(np.arange(10))
    assert scan_bytes(good[:-8]).verdict is Verdict.ERROR  # truncated data
    assert scan_bytes(good + b"extra").verdict is Verdict.SUSPICIOUS  # trailing data
    bad_header = good.replace(b"'descr'", b"'dexcr'")
    assert scan_bytes(bad_header).verdict is Verdict.ERROR
    huge = b"\x93NUMPY\x02\x00" + struct.pack("<I", 50 << 20) + b" " * 100
    assert scan_bytes(huge).verdict is Verdict.ERROR
    code = b"\x93NUMPY\x01\x00" + struct.pack("<H", 40) + b"{'descr': __import__('os').system('true')}".ljust(40)
    assert scan_bytes(code).verdict is Verdict.ERROR  # literal_eval refuses calls


# -- compression -------------------------------------------------------------------------------------------
def test_multi_member_gzip_scans_every_member() -> None:
    data = gzip.compress(b"\x80\x02N.") + gzip.compress(os_system_pickle(2))
    assert scan_bytes(data).verdict is Verdict.MALICIOUS


def test_corrupt_and_trailing_compressed_streams() -> None:
    good = gzip.compress(os_system_pickle(2) + b"\x80\x02N." * 1000)
    broken = good[:20] + bytes([good[20] ^ 0xFF]) + good[21:]
    assert scan_bytes(broken).verdict in (Verdict.ERROR, Verdict.MALICIOUS)
    assert scan_bytes(gzip.compress(b"\x80\x02N.")[:-6]).verdict is Verdict.ERROR
    report = scan_bytes(gzip.compress(b"\x80\x02N.") + b"junk after")
    assert report.verdict is Verdict.SUSPICIOUS


@pytest.mark.parametrize("compress", [bz2.compress, lzma.compress, gzip.compress])
def test_decompression_bombs_are_malicious(compress: object) -> None:
    assert callable(compress)
    data = compress(b"\x00" * (16 << 20))
    report = scan_bytes(data, limits=Limits(ratio_min_bytes=1 << 20, max_ratio=100))
    assert report.verdict is Verdict.MALICIOUS
    assert any("bomb" in f.message for f in report.findings)


def test_total_decompression_budget_is_an_error() -> None:
    data = gzip.compress(os.urandom(1 << 20))
    report = scan_bytes(data, limits=Limits(max_decompressed_total=1 << 18))
    assert report.verdict is Verdict.ERROR


# -- safetensors -------------------------------------------------------------------------------------------
def _st(tensors: dict[str, tuple[str, list[int], list[int]]], data: bytes, **extra: object) -> bytes:
    header: dict[str, object] = {k: {"dtype": d, "shape": s, "data_offsets": o} for k, (d, s, o) in tensors.items()}
    header.update(extra)
    return safetensors_bytes(header, data)


def test_valid_safetensors_is_clean_and_loads() -> None:
    from safetensors.numpy import load, save

    data = save({"a": np.ones((2, 3), np.float32), "b": np.zeros(0, np.int8), "c": np.arange(4, dtype=np.uint16)},
                metadata={"format": "np"})  # fmt: skip
    assert scan_bytes(data).verdict is Verdict.CLEAN
    assert set(load(data)) == {"a", "b", "c"}


@pytest.mark.parametrize(
    "data,verdict,why",
    [
        (struct.pack("<Q", 200_000_000) + b"{}", Verdict.ERROR, "exceeds"),
        (struct.pack("<Q", 50) + b"{}", Verdict.ERROR, "past the end"),
        (safetensors_bytes(b'{"a": \xff}', b""), Verdict.ERROR, "not UTF-8"),
        (safetensors_bytes(b"{not json}", b""), Verdict.ERROR, "not valid JSON"),
        (safetensors_bytes(b'{"a": NaN}', b""), Verdict.ERROR, "not valid JSON"),
        (safetensors_bytes(b"{} [1, 2]", b""), Verdict.ERROR, "not valid JSON"),
        (_st({"a": ("F32", [1], [0, 4])}, b"\0" * 4, __metadata__={"k": 1}), Verdict.ERROR, "__metadata__"),
        (_st({"a": ("Q7", [1], [0, 4])}, b"\0" * 4), Verdict.ERROR, "unknown dtype"),
        (_st({"a": ("F32", [-1], [0, 4])}, b"\0" * 4), Verdict.ERROR, "non-negative"),
        (_st({"a": ("F32", [1.5], [0, 4])}, b"\0" * 4), Verdict.ERROR, "non-negative"),
        (_st({"a": ("F32", [2], [0, 4])}, b"\0" * 8), Verdict.ERROR, "data_offsets span"),
        (_st({"a": ("F32", [1], [4, 0])}, b"\0" * 4), Verdict.ERROR, "begin <= end"),
        (_st({"a": ("F32", [1], [0, 4]), "b": ("F32", [1], [2, 6])}, b"\0" * 6), Verdict.ERROR, "overlaps"),
        (_st({"a": ("F32", [2], [0, 8])}, b"\0" * 4), Verdict.ERROR, "the file has"),
        (_st({"a": ("F4", [3], [0, 2])}, b"\0" * 2), Verdict.ERROR, "whole number of bytes"),
        (_st({"a": ("F32", [1], [4, 8])}, b"\0" * 8), Verdict.SUSPICIOUS, "unused bytes before"),
        (_st({"a": ("F32", [1], [0, 4])}, b"\0" * 4 + os_system_pickle(2)), Verdict.SUSPICIOUS, "after the last"),
        (safetensors_bytes(b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                           b'"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', b"\0" * 8),
         Verdict.SUSPICIOUS, "duplicate key"),
        (safetensors_bytes(b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}', b"\0" * 4),
         Verdict.SUSPICIOUS, "unexpected header keys"),
        (safetensors_bytes(b'{"a": {"dtype": "F32", "shape": [1]}}', b"\0" * 4), Verdict.ERROR, "missing"),
    ],
)  # fmt: skip
def test_safetensors_defects(data: bytes, verdict: Verdict, why: str) -> None:
    report = scan_bytes(data)
    assert report.format in ("safetensors", "unknown")
    assert report.verdict is verdict, report.findings
    assert any(why in f.message for f in report.findings), report.findings


def test_safetensors_padded_header_is_clean() -> None:
    header = json.dumps({"a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}).encode()
    header += b" " * (-len(header) % 8)
    assert scan_bytes(safetensors_bytes(header, b"\0" * 4)).verdict is Verdict.CLEAN
