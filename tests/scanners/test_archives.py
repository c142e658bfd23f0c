"""Zip and tar archives: every member any reader could load is scanned; bombs and traversal refused."""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile

import numpy as np

from scanners import Limits, Verdict, scan_bytes
from tests.scanners.corpus import (
    ZipEntry,
    deflate_bomb,
    npy_bytes,
    os_system_pickle,
    overlap_zip,
    raw_zip,
    replace_member,
    tar_bytes,
    torch_bytes,
    wrap_zip,
)

EVIL = os_system_pickle(2)


def _sd() -> bytes:
    import torch

    return torch_bytes(torch.nn.Linear(3, 2).state_dict())


def _symbols(data: bytes, **kw: object) -> set[tuple[str | None, str | None]]:
    return {(f.member, f.symbol) for f in scan_bytes(data, **kw).findings}  # type: ignore[arg-type]


def test_torch_zip_is_clean_and_storages_are_not_read() -> None:
    report = scan_bytes(_sd())
    assert (report.verdict, report.format, report.findings) == (Verdict.CLEAN, "pytorch-zip", [])


def test_every_pkl_member_is_scanned_not_only_data_pkl() -> None:
    entries = [*replace_member(_sd(), "/none", b""), ZipEntry("archive/extra/state.pkl", EVIL)]
    assert ("archive/extra/state.pkl", "posix.system") in _symbols(raw_zip(entries))


def test_pickle_named_like_anything_is_found_by_content() -> None:
    data = wrap_zip({"README.txt": EVIL, "config.json": b"{}"})
    assert ("README.txt", "posix.system") in _symbols(data)


def test_duplicate_names_scan_both_copies() -> None:
    entries = replace_member(_sd(), "/none", b"")
    name = next(e.name for e in entries if e.name.endswith("data.pkl"))
    benign = next(e.data for e in entries if e.name == name)
    data = raw_zip([ZipEntry(name, EVIL), *[e for e in entries if e.name != name], ZipEntry(name, benign)])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read(name) == benign  # what zipfile-based scanners see
    report = scan_bytes(data)
    assert report.verdict is Verdict.MALICIOUS
    assert any("duplicate member name" in f.message for f in report.findings)


def test_bad_crc_does_not_hide_a_member() -> None:
    data = raw_zip([ZipEntry("archive/data.pkl", EVIL, bad_crc=True), ZipEntry("archive/version", b"3\n")])
    report = scan_bytes(data)
    assert report.verdict is Verdict.MALICIOUS
    assert any("CRC mismatch" in f.message for f in report.findings)


def test_member_missing_from_the_central_directory_is_found() -> None:
    data = raw_zip([ZipEntry("a.txt", b"hi"), ZipEntry("hidden.pkl", EVIL, in_central=False)])
    report = scan_bytes(data)
    assert ("hidden.pkl", "posix.system") in {(f.member, f.symbol) for f in report.findings}
    assert any("only in the local headers" in f.message for f in report.findings)


def test_local_and_central_names_that_differ_are_both_checked() -> None:
    data = raw_zip([ZipEntry("archive/data.pkl", EVIL, central_name="archive/notes.txt")])
    report = scan_bytes(data)
    assert report.verdict is Verdict.MALICIOUS
    assert any("differs from central name" in f.message for f in report.findings)


def test_bytes_outside_any_member_are_scanned() -> None:
    zipped = raw_zip([ZipEntry("a.txt", b"hi")])
    cd = zipped.index(b"PK\x01\x02")
    # put a pickle between the last member and the directory, fixing the directory offset
    data = zipped[:cd] + EVIL + zipped[cd:]
    eocd = data.rindex(b"PK\x05\x06")
    data = data[: eocd + 16] + struct.pack("<I", cd + len(EVIL)) + data[eocd + 20 :]
    report = scan_bytes(data)
    assert report.verdict is Verdict.MALICIOUS
    assert any("belong to no zip member" in f.message for f in report.findings)


def test_pickle_zip_polyglot_is_scanned_both_ways() -> None:
    report = scan_bytes(EVIL + _sd())
    assert report.verdict is Verdict.MALICIOUS
    assert any("polyglot" in f.message for f in report.findings)


def test_overlapping_members_are_a_bomb() -> None:
    report = scan_bytes(overlap_zip())
    assert report.verdict is Verdict.MALICIOUS
    assert any("overlap" in f.message for f in report.findings)


def test_deflate_bomb_is_refused_with_a_cap() -> None:
    report = scan_bytes(deflate_bomb(8), limits=Limits(ratio_min_bytes=1 << 20, max_ratio=200))
    assert report.verdict is Verdict.MALICIOUS
    assert any("bomb" in f.message for f in report.findings)


def test_path_traversal_names_are_malicious() -> None:
    for name in ("../x", "a/../../x", "/etc/passwd", "C:\\x", "a\\..\\..\\x"):
        report = scan_bytes(raw_zip([ZipEntry(name, b"x")]))
        assert report.verdict is Verdict.MALICIOUS, name
        assert any("path traversal" in f.message for f in report.findings)


def test_npz_with_object_array_is_flagged_and_numeric_npz_clean() -> None:
    assert scan_bytes(wrap_zip({"a.npy": npy_bytes(np.ones(3))})).format == "npz"
    obj = wrap_zip({"a.npy": npy_bytes(np.array([1, None], dtype=object))}, zipfile.ZIP_DEFLATED)
    report = scan_bytes(obj)
    assert report.verdict is Verdict.SUSPICIOUS
    assert report.findings[0].member == "a.npy"


def test_corrupt_zip_is_an_error() -> None:
    data = _sd()
    assert scan_bytes(data[:-30]).verdict is Verdict.ERROR
    cd = data.index(b"PK\x01\x02")
    broken = data[:cd] + b"XX" + data[cd + 2 :]
    assert scan_bytes(broken).verdict is Verdict.ERROR


def test_encrypted_or_unsupported_members_are_not_clean() -> None:
    data = bytearray(raw_zip([ZipEntry("a.pkl", EVIL)]))
    data[6] |= 1  # local flags: encrypted
    cd = data.index(b"PK\x01\x02")
    data[cd + 8] |= 1
    assert scan_bytes(bytes(data)).verdict.rank >= Verdict.SUSPICIOUS.rank


def test_nested_archives_are_scanned() -> None:
    inner = wrap_zip({"x.pkl": EVIL})
    outer = wrap_zip({"inner.zip": inner})
    assert ("inner.zip!x.pkl", "posix.system") in _symbols(outer)
    assert scan_bytes(tar_bytes({"m.zip": outer})).verdict is Verdict.MALICIOUS


def test_tar_members_links_and_traversal() -> None:
    assert scan_bytes(tar_bytes({"a/b.pkl": EVIL})).verdict is Verdict.MALICIOUS
    assert scan_bytes(tar_bytes({"a/b.txt": b"hello\n"})).verdict is Verdict.CLEAN
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        link = tarfile.TarInfo("evil")
        link.type = tarfile.SYMTYPE
        link.linkname = "../../etc/passwd"
        tf.addfile(link)
    report = scan_bytes(buf.getvalue())
    assert report.verdict is Verdict.MALICIOUS
    assert scan_bytes(tar_bytes({"../up.txt": b"x"})).verdict is Verdict.MALICIOUS


def test_zip_inside_gzip_is_spooled_and_scanned() -> None:
    import gzip

    data = gzip.compress(raw_zip(replace_member(_sd(), "/data.pkl", EVIL)))
    report = scan_bytes(data)
    assert report.verdict is Verdict.MALICIOUS and report.format == "gzip:pytorch-zip"
