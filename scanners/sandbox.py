"""Scan a file in a separate, resource-limited process.

The analysis is static, but parsers of hostile input are where bugs live, so a
service scans uploads out of process: ``python -I -m scanners.worker`` with
RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE and no core dumps, a wall-clock timeout, its
own session (so the whole group can be killed), and a minimal environment. A
crash, a limit hit, a timeout or unparsable output becomes an ``error`` report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from scanners.api import SCANNER_NAME
from scanners.limits import Limits
from scanners.report import Finding, Report, Verdict, report_from_dict

DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MEMORY_BYTES = 4 << 30
MAX_OUTPUT_BYTES = 16 << 20

# Isolated mode (-I) ignores PYTHON* variables and the working directory; the child imports this very
# copy of the scanners package, installed or not.
_ROOT = str(Path(__file__).resolve().parent.parent)
_BOOT = f"import sys; sys.path.insert(0, {_ROOT!r}); from scanners.worker import main; sys.exit(main())"


def _error(path: str, message: str) -> Report:
    report = Report(scanner=SCANNER_NAME, format="unknown", path=path)
    report.add(Finding(Verdict.ERROR, message))
    return report


def _env() -> dict[str, str]:
    env = {"LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if "PATH" in os.environ:
        env["PATH"] = os.environ["PATH"]
    return env


_SIGNAL_HINTS = {
    signal.SIGXCPU: "CPU time limit",
    signal.SIGKILL: "killed: memory or time limit",
    signal.SIGXFSZ: "file size limit",
    signal.SIGSEGV: "crash",
    signal.SIGABRT: "abort",
}


def _describe_exit(code: int) -> str:
    if code >= 0:
        return f"scanner process exited with status {code}"
    try:
        sig = signal.Signals(-code)
    except ValueError:
        return f"scanner process killed by signal {-code}"
    hint = _SIGNAL_HINTS.get(sig)
    return f"scanner process killed by {sig.name}" + (f" ({hint})" if hint else "")


def scan_path_sandboxed(
    path: str | os.PathLike[str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    cpu_seconds: int | None = None,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    limits: Limits | None = None,
) -> Report:
    """Scan ``path`` in a child process; never raises for bad input, a crash or a timeout."""
    shown = os.fspath(path)
    cpu = cpu_seconds if cpu_seconds is not None else max(1, int(timeout_s))
    overrides = dataclasses.asdict(limits) if limits is not None else {}
    overrides = {k: sorted(v) if isinstance(v, frozenset) else v for k, v in overrides.items()}  # JSON: no sets
    cmd = [
        sys.executable, "-I", "-c", _BOOT,
        "--cpu-seconds", str(cpu), "--memory-bytes", str(memory_bytes),
        "--limits-json", json.dumps(overrides), "--", os.path.abspath(shown),
    ]  # fmt: skip
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
            start_new_session=True,
        )
    except OSError as exc:
        return _error(shown, f"cannot start the scanner process: {exc}")
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return _error(shown, f"scan timed out after {timeout_s:g} s")
    if proc.returncode != 0:
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        detail = f": {tail[0][:300]}" if tail[0] else ""
        return _error(shown, _describe_exit(proc.returncode) + detail)
    if len(out) > MAX_OUTPUT_BYTES:
        return _error(shown, "scanner output too large")
    try:
        data = json.loads(out)
        if not isinstance(data, dict):
            raise ValueError("report is not a JSON object")
        report = report_from_dict(data)
    except ValueError as exc:
        return _error(shown, f"unreadable scanner output: {exc}")
    report.path = shown
    return report
