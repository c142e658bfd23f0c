"""The sandboxed runner: same reports as in-process, and crashes, limits and timeouts become errors."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from scanners import Limits, Verdict, scan_path
from scanners.report import report_from_dict
from scanners.sandbox import scan_path_sandboxed
from tests.scanners.corpus import os_system_pickle


def _slow_pickle(path: Path) -> Path:
    """Millions of memo operations: seconds of CPU for the analyser."""
    path.write_bytes(b"\x80\x04" + b"K\x01\x940" * 1_500_000 + b"N.")
    return path


def test_sandboxed_report_matches_in_process(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(os_system_pickle(2))
    inside, outside = scan_path(path), scan_path_sandboxed(path)
    assert outside.to_dict() == inside.to_dict()
    assert outside.verdict is Verdict.MALICIOUS


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    report = scan_path_sandboxed(tmp_path / "nope.pt")
    assert report.verdict is Verdict.ERROR


def test_limits_are_passed_to_the_child(tmp_path: Path) -> None:
    path = tmp_path / "wrapped.pkl.gz"
    path.write_bytes(gzip.compress(b"\x80\x02N."))
    assert scan_path_sandboxed(path).verdict is Verdict.CLEAN
    report = scan_path_sandboxed(path, limits=Limits(max_depth=0))
    assert report.verdict is Verdict.ERROR
    assert "nesting" in report.findings[0].message


def test_timeout_is_an_error(tmp_path: Path) -> None:
    report = scan_path_sandboxed(_slow_pickle(tmp_path / "slow.pkl"), timeout_s=0.5)
    assert report.verdict is Verdict.ERROR
    assert "timed out" in report.findings[0].message


def test_cpu_limit_is_an_error(tmp_path: Path) -> None:
    report = scan_path_sandboxed(_slow_pickle(tmp_path / "slow.pkl"), cpu_seconds=1, timeout_s=60)
    assert report.verdict is Verdict.ERROR
    assert "SIGXCPU" in report.findings[0].message or "SIGKILL" in report.findings[0].message


def test_memory_limit_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "big.pkl"
    n = 300 << 20
    with path.open("wb") as f:
        f.write(b"\x80\x04\x8e" + struct.pack("<Q", n))
        f.truncate(11 + n)  # sparse: quick to write, still n bytes to read
    limits = Limits(max_inline_value=1 << 30, max_retained_bytes=1 << 30)
    report = scan_path_sandboxed(path, memory_bytes=200 << 20, limits=limits)
    assert report.verdict is Verdict.ERROR
    assert "memory" in report.findings[0].message or "killed" in report.findings[0].message


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"scanner": "x", "format": "y", "verdict": "clean", "findings": "nope"},
        {"scanner": "x", "format": "y", "verdict": "bogus", "findings": []},
        {"scanner": "x", "format": "y", "verdict": "clean", "findings": [{"severity": "clean"}]},
        {"scanner": "x", "format": "y", "verdict": "clean", "findings": [{"severity": "error", "message": 1}]},
        {"scanner": "x", "format": "y", "verdict": "clean", "findings": [{"severity": "error", "message": "m",
                                                                         "offset": "3"}]},
    ],
)  # fmt: skip
def test_report_from_dict_rejects_malformed_input(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        report_from_dict(data)


def test_report_from_dict_never_improves_the_verdict() -> None:
    report = report_from_dict({"scanner": "x", "format": "y", "verdict": "error", "findings": []})
    assert report.verdict is Verdict.ERROR


HEAVY_LIBRARIES = ("py7zr", "numpy", "h5py", "jinja2")


def _imported_after_scan(path: Path) -> set[str]:
    """Which heavy libraries a fresh interpreter has imported after scanning ``path`` the way the sandbox does."""
    code = (
        "import sys; from scanners.api import scan_path; scan_path(sys.argv[1]); "
        f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY_LIBRARIES)!r})))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                         cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    return set(out.stdout.split())


def test_a_sandbox_imports_only_the_libraries_its_format_needs(tmp_path: Path) -> None:
    """Each file is scanned by a fresh process: a pickle or a config must not pay for py7zr, h5py or jinja2."""
    pickle_file = tmp_path / "evil.pkl"
    pickle_file.write_bytes(os_system_pickle(2))
    config = tmp_path / "config.json"
    config.write_text('{"hidden_size": 8}')
    assert _imported_after_scan(pickle_file) == set()
    assert _imported_after_scan(config) == set()
    templated = tmp_path / "tokenizer_config.json"
    templated.write_text('{"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}')
    assert _imported_after_scan(templated) == {"jinja2"}  # and a format that needs one still gets it
