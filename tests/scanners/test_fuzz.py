"""Property-based tests: hostile bytes never crash the scanner and garbage is never clean."""

from __future__ import annotations

import io
import pickle
import pickletools
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanners import Verdict, scan_bytes
from tests.scanners.corpus import ZipEntry, os_system_pickle, raw_zip, safetensors_bytes

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

EVIL_P2 = os_system_pickle(2)
EVIL_P4 = os_system_pickle(4)
EVIL_ZIP = raw_zip([ZipEntry("archive/data.pkl", EVIL_P2), ZipEntry("archive/version", b"3\n")])


def _parses_to_stop(data: bytes) -> bool:
    """Static oracle (pickletools never imports or calls): is ``data`` one or more complete pickles?"""
    f = io.BytesIO(data)
    try:
        while f.tell() < len(data):
            for _ in pickletools.genops(f):
                pass
    except Exception:  # any parse failure means "not a complete pickle"
        return False
    return True


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_never_raise(data: bytes) -> None:
    report = scan_bytes(data)
    assert report.verdict in set(Verdict)
    report.to_dict()


@FUZZ
@given(st.binary(max_size=512))
def test_garbage_claimed_as_pickle_is_not_clean(tail: bytes) -> None:
    for proto in (2, 4, 5):
        data = bytes([0x80, proto]) + tail
        report = scan_bytes(data)
        if report.verdict is Verdict.CLEAN:
            assert _parses_to_stop(data), data


@FUZZ
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255), st.sampled_from([EVIL_P2, EVIL_P4]))
def test_mutated_malicious_pickle_is_never_clean(pos: int, value: int, evil: bytes) -> None:
    pos %= len(evil)
    mutated = evil[:pos] + bytes([value]) + evil[pos + 1 :]
    assert scan_bytes(mutated).verdict is not Verdict.CLEAN, mutated


@FUZZ
@given(st.integers(min_value=1))
def test_truncated_pickles_are_errors(cut: int) -> None:
    data = pickle.dumps({"a": [1.5, "x", b"y"], "b": (1, 2)}, protocol=4)
    cut = 1 + cut % (len(data) - 1)  # 1 .. len-1 bytes: never empty, never complete
    assert scan_bytes(data[:cut]).verdict is not Verdict.CLEAN


@FUZZ
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_mutated_malicious_zip_is_never_clean(pos: int, value: int) -> None:
    pos %= len(EVIL_ZIP)
    mutated = EVIL_ZIP[:pos] + bytes([value]) + EVIL_ZIP[pos + 1 :]
    assert scan_bytes(mutated).verdict is not Verdict.CLEAN


@FUZZ
@given(st.binary(max_size=1024))
def test_random_zip_bodies_never_raise(body: bytes) -> None:
    scan_bytes(b"PK\x03\x04" + body)
    scan_bytes(body + b"PK\x05\x06" + b"\x00" * 18)


_dtypes = st.sampled_from([("F32", 4), ("F16", 2), ("I64", 8), ("U8", 1), ("BOOL", 1), ("BF16", 2)])


@FUZZ
@given(st.lists(st.tuples(_dtypes, st.lists(st.integers(0, 4), max_size=3)), max_size=5))
def test_generated_safetensors_are_clean_and_load(specs: list[tuple[tuple[str, int], list[int]]]) -> None:
    from safetensors.torch import load

    header, offset = {}, 0
    for i, ((dtype, size), shape) in enumerate(specs):
        n = size
        for d in shape:
            n *= d
        header[f"t{i}"] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    data = safetensors_bytes(header, b"\0" * offset)
    assert scan_bytes(data).verdict is Verdict.CLEAN
    assert set(load(data)) == set(header)


@FUZZ
@given(st.binary(max_size=300), st.integers(0, 400))
def test_random_safetensors_headers_never_raise(header: bytes, data_len: int) -> None:
    report = scan_bytes(struct.pack("<Q", len(header) + 1) + b"{" + header + b"\0" * data_len)
    assert report.verdict in set(Verdict)


_SNIPPETS = [
    b"(", b")", b"]", b"}", b"N", b"K\x01", b"q\x00", b"q\x01", b"h\x00", b"h\x01", b"\x94", b"0", b"1", b"2",
    b"t", b"\x85", b"\x86", b"\x87", b"a", b"e", b"s", b"u", b"R", b"b", b"\x81", b"\x93", b"Q", b"o", b"l", b"d",
    b"\x8c\x02os", b"\x8c\x06system", b"\x8c\x0bcollections", b"\x8c\x0bOrderedDict", b"cos\nsystem\n",
    b"ccollections\nOrderedDict\n", b"c_codecs\nencode\n", b"cpickle\nloads\n", b"C\x02\x80\x02", b"\x95" + b"\0" * 8,
    b"i__main__\nX\n", b"\x82\x01", b"\x97", b"\x8f", b"\x90", b"\x91", b"\x80\x04", b".",
]  # fmt: skip


@FUZZ
@given(st.lists(st.sampled_from(_SNIPPETS), max_size=40))
def test_opcode_soup_never_raises_and_clean_means_complete(parts: list[bytes]) -> None:
    data = b"\x80\x04" + b"".join(parts)
    report = scan_bytes(data)
    if report.verdict is Verdict.CLEAN:
        assert _parses_to_stop(data)
        assert b"cos\nsystem\n" not in data  # every snippet is self-contained: it was parsed as a GLOBAL
