"""Scan a file in a separate, resource-limited process.

The analysis is static, but parsers of hostile input are where bugs live, so a
service scans uploads out of process: every file gets a fresh process with
RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE and no core dumps, a wall-clock timeout, its
own session (so the whole group can be killed), and a minimal environment. A
crash, a limit hit, a timeout or unparsable output becomes an ``error`` report.

Those processes are forked by a fork server (:mod:`scanners.forkserver`), started once per process as
``python -I`` with that minimal environment, so a scan does not pay an interpreter start and the scanners'
imports (0.09 s of CPU each). The fork server is restarted after any scan that did not end cleanly and every
``RESTART_AFTER`` scans; if it fails, the scan is retried once with a new one, then reported as an error.
Concurrent callers (threads) each get a fork server of their own; a forked process starts its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from scanners.api import SCANNER_NAME
from scanners.forkserver import LENGTH, write_frame
from scanners.limits import Limits
from scanners.report import Finding, Report, Verdict, report_from_dict

DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MEMORY_BYTES = 4 << 30
MAX_OUTPUT_BYTES = 16 << 20

# Isolated mode (-I) ignores PYTHON* variables and the working directory; the child imports this very
# copy of the scanners package, installed or not.
_ROOT = str(Path(__file__).resolve().parent.parent)
_BOOT = f"import sys; sys.path.insert(0, {_ROOT!r}); from scanners.forkserver import main; sys.exit(main())"
RESTART_AFTER = 500  # scans per fork server: children share its memory layout, so it does not live forever
_ANSWER_GRACE_S = 30.0  # beyond a scan's own timeout, how long the fork server may take to answer


class SandboxUnavailable(Exception):
    """The fork server could not be started or stopped answering."""


@dataclasses.dataclass(frozen=True)
class _Outcome:
    returncode: int
    output: bytes
    stderr: str
    timed_out: bool
    output_truncated: bool

    @property
    def clean(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.output_truncated


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


class _ForkServer:
    """This process's fork server: started on first use, one request at a time, replaced when in doubt."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner = os.getpid()
        self._served = 0

    def run(self, argv: list[str], timeout_s: float) -> _Outcome:
        with self._lock:
            for attempt in (1, 2):
                try:
                    outcome = self._ask(argv, timeout_s)
                except SandboxUnavailable:
                    self._stop(kill=True)
                    if attempt == 2:
                        raise
                    continue
                except BaseException:
                    # Interrupted between request and answer (KeyboardInterrupt, a signal handler's timeout): the
                    # answer still on its way would be read as the next scan's, a clean one for a malicious file.
                    self._stop(kill=True)
                    raise
                self._served += 1
                if not outcome.clean or self._served >= RESTART_AFTER:
                    self._stop()
                return outcome
        raise AssertionError("unreachable")

    def _ask(self, argv: list[str], timeout_s: float) -> _Outcome:
        proc = self._running()
        assert proc.stdin is not None and proc.stdout is not None
        request = {"argv": argv, "timeout_s": timeout_s, "max_output": MAX_OUTPUT_BYTES}
        try:
            write_frame(proc.stdin.fileno(), json.dumps(request).encode())
            # The deadline covers the whole answer, not just its first byte: a fork server that stops half way
            # through a frame must not block this caller (and every scan queued behind it) for ever.
            answer = _Answer(proc.stdout.fileno(), time.monotonic() + timeout_s + _ANSWER_GRACE_S)
            header = answer.frame(1 << 20)
            output = answer.frame(MAX_OUTPUT_BYTES + (1 << 16))
        except (OSError, EOFError, ValueError) as exc:
            raise SandboxUnavailable(f"the fork server failed: {exc}") from exc
        if header is None or output is None:
            raise SandboxUnavailable("the fork server exited")
        try:
            data = json.loads(header)
            return _Outcome(int(data["returncode"]), output, str(data["stderr"]), bool(data["timed_out"]),
                            bool(data["output_truncated"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise SandboxUnavailable(f"unreadable answer from the fork server: {exc}") from exc

    def _running(self) -> subprocess.Popen[bytes]:
        if self._owner != os.getpid():  # a forked copy of this object: never share the parent's pipes
            self._proc, self._owner, self._served = None, os.getpid(), 0
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=_env(),
                start_new_session=True,
            )
        except OSError as exc:
            raise SandboxUnavailable(f"cannot start the scanner process: {exc}") from exc
        self._served = 0
        return self._proc

    def _stop(self, kill: bool = False) -> None:
        """Stop the fork server: at the end of its requests, or now if ``kill`` (it failed: no point waiting)."""
        proc, self._proc = self._proc, None
        if proc is None or self._owner != os.getpid():
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()  # the fork server exits at the end of its requests
        try:
            if kill:
                raise subprocess.TimeoutExpired(proc.args, 0)
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # its scan children die with it (PR_SET_PDEATHSIG)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def _forget_after_fork(self) -> None:
        """In a forked child of this process: a fresh lock (another thread may have held it at the fork) and none
        of the parent's pipes (held here, they would keep the parent's fork server from ever seeing its end)."""
        self._lock = threading.Lock()
        proc, self._proc, self._owner, self._served = self._proc, None, os.getpid(), 0
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
            proc.returncode = 0  # not this process's child: never wait for it


class _Answer:
    """Reads the fork server's answer frames from ``fd``, each read bounded by one ``deadline``."""

    def __init__(self, fd: int, deadline: float) -> None:
        self._fd, self._deadline = fd, deadline

    def _exact(self, n: int) -> bytes:
        buf = bytearray()
        with selectors.DefaultSelector() as selector:
            selector.register(self._fd, selectors.EVENT_READ)
            while len(buf) < n:
                if not selector.select(max(0.0, self._deadline - time.monotonic())):
                    raise SandboxUnavailable("the fork server did not answer in time")
                chunk = os.read(self._fd, min(n - len(buf), 1 << 20))
                if not chunk:
                    raise SandboxUnavailable("the fork server exited")
                buf += chunk
        return bytes(buf)

    def frame(self, limit: int) -> bytes:
        (size,) = LENGTH.unpack(self._exact(LENGTH.size))
        if size > limit:
            raise SandboxUnavailable(f"the fork server sent a frame of {size} bytes")
        return self._exact(size) if size else b""


class _Pool:
    """The fork servers of this process: each serves one scan at a time, and a caller that finds them all busy
    gets another, so a scan that hangs (up to its timeout) never holds up scans on other threads."""

    def __init__(self, first: _ForkServer) -> None:
        self._lock = threading.Lock()
        self._servers = [first]  # the first one first: a single-threaded caller always uses it
        self._busy: set[_ForkServer] = set()

    def servers(self) -> list[_ForkServer]:
        with self._lock:
            return list(self._servers)

    def run(self, argv: list[str], timeout_s: float) -> _Outcome:
        with self._lock:
            server = next((s for s in self._servers if s not in self._busy), None)
            if server is None:
                server = _ForkServer()
                self._servers.append(server)
            self._busy.add(server)
        try:
            return server.run(argv, timeout_s)
        finally:
            with self._lock:
                self._busy.discard(server)
                idle = [s for s in self._servers if s not in self._busy]
                spare = server if server is not self._servers[0] and len(idle) > _IDLE_SERVERS else None
                if spare is not None:
                    self._servers.remove(spare)
            if spare is not None:
                spare._stop()

    def _forget_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._busy = set()
        for server in self._servers:
            server._forget_after_fork()
        del self._servers[1:]


_FORK_SERVER = _ForkServer()
_POOL = _Pool(_FORK_SERVER)
_IDLE_SERVERS = 4  # idle fork servers kept for concurrent callers; more are stopped as their scans end
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_POOL._forget_after_fork)


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
    argv = [
        "--cpu-seconds", str(cpu), "--memory-bytes", str(memory_bytes),
        "--limits-json", json.dumps(overrides), "--", os.path.abspath(shown),
    ]  # fmt: skip
    try:
        outcome = _POOL.run(argv, timeout_s)
    except SandboxUnavailable as exc:
        return _error(shown, str(exc))
    if outcome.timed_out:
        return _error(shown, f"scan timed out after {timeout_s:g} s")
    if outcome.output_truncated:
        return _error(shown, "scanner output too large")
    if outcome.returncode != 0:
        tail = outcome.stderr.strip().splitlines()[-1:] or [""]
        detail = f": {tail[0][:300]}" if tail[0] else ""
        return _error(shown, _describe_exit(outcome.returncode) + detail)
    out = outcome.output
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
