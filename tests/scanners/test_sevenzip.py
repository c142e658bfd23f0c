"""7z archives: members are listed, streamed and scanned by content; nothing is written where they say."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zlib
from pathlib import Path

import py7zr
import pytest

from scanners import Limits, Verdict, scan_bytes, scan_path
from tests.scanners.corpus import os_system_pickle


def seven_zip(members: dict[str, bytes], *, password: str | None = None) -> bytes:
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, mode="w", password=password) as archive:
        if password:
            archive.set_encrypted_header(True)
        for name, data in members.items():
            archive.writestr(data, name)
    return buf.getvalue()


def test_benign_archive_is_clean_and_members_are_scanned() -> None:
    data = seven_zip({"weights.pkl": pickle.dumps({"w": [1.0, 2.0]}), "docs/README.md": b"# model\n"})
    report = scan_bytes(data, name="m.7z")
    assert (report.verdict, report.format) == (Verdict.CLEAN, "7z"), report.findings


def test_a_malicious_member_is_found_with_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be extracted into the working directory
    data = seven_zip({"ok.txt": b"fine\n", "nested/evil.pkl": os_system_pickle()})
    report = scan_bytes(data, name="m.7z")
    assert report.verdict is Verdict.MALICIOUS
    assert any(f.member and "nested/evil.pkl" in f.member for f in report.findings), report.findings
    assert list(tmp_path.iterdir()) == []


def renamed(data: bytes, old: str, new: str) -> bytes:
    """A 7z with a plain (unencoded) header whose member ``old`` is renamed ``new`` (same length), CRCs fixed:
    py7zr refuses to write a traversal name, so a hostile archive is made the way an attacker would."""
    start = 32
    offset, size = struct.unpack_from("<QQ", data, 12)
    header = bytearray(data[start + offset : start + offset + size])
    at = header.find(old.encode("utf-16-le"))
    assert at > 0 and len(old) == len(new)
    header[at : at + 2 * len(new)] = new.encode("utf-16-le")
    tail = struct.pack("<QQI", offset, size, zlib.crc32(header))
    return data[:8] + struct.pack("<I", zlib.crc32(tail)) + tail + data[32 : start + offset] + bytes(header)


def test_traversal_names_are_malicious() -> None:
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, mode="w") as archive:
        archive.set_encoded_header_mode(False)
        archive.writestr(b"* * * * * root true\n", "AA/AA/etc/cron.d/x")
    hostile = renamed(buf.getvalue(), "AA/AA/etc/cron.d/x", "../../etc/cron.d/x")
    report = scan_bytes(hostile, name="t.7z")
    assert report.verdict is Verdict.MALICIOUS
    assert any("path traversal" in f.message for f in report.findings)


def test_encrypted_archive_is_suspicious() -> None:
    report = scan_bytes(seven_zip({"evil.pkl": os_system_pickle()}, password="pw"), name="e.7z")
    assert report.verdict is Verdict.SUSPICIOUS
    assert any("encrypted" in f.message for f in report.findings)


def test_a_bomb_is_stopped_while_it_inflates() -> None:
    data = seven_zip({"zeros.bin": b"\0" * (8 << 20)})
    assert len(data) < 64 * 1024
    small = Limits(max_ratio=10.0, ratio_min_bytes=1 << 20)
    report = scan_bytes(data, name="b.7z", limits=small)
    assert report.verdict is Verdict.MALICIOUS, report.findings
    budget = Limits(max_decompressed_total=1 << 20)
    assert scan_bytes(data, name="b.7z", limits=budget).verdict is not Verdict.CLEAN


@pytest.mark.parametrize("cut", [12, 40, 0.5])
def test_truncated_or_corrupt_archives_are_never_clean(cut: float) -> None:
    data = seven_zip({"a.pkl": pickle.dumps(list(range(1000))), "b.txt": os.urandom(2000)})
    broken = data[: int(len(data) * cut)] if isinstance(cut, float) else data[:cut]
    assert scan_bytes(broken, name="x.7z").verdict in (Verdict.ERROR, Verdict.SUSPICIOUS, Verdict.MALICIOUS)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    assert scan_bytes(bytes(flipped), name="x.7z").verdict is not Verdict.CLEAN


def test_a_7z_inside_a_gzip_stream_is_opened(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "m.7z.gz"
    path.write_bytes(gzip.compress(seven_zip({"evil.pkl": os_system_pickle()})))
    assert scan_path(path).verdict is Verdict.MALICIOUS
