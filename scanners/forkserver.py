"""The scan fork server: a small process that forks one fresh child per scan.

Starting ``python -I`` and importing the scanners costs about 0.09 s of CPU per file, which a registry scanning
thousands of small files pays over and over (and which competes with the API on the same cores). This process
pays it once: :mod:`scanners.sandbox` starts it with the sandbox's minimal environment and isolated mode, it
imports the scanners, and for every request it forks a child that does exactly what a freshly started sandbox
did (:func:`scanners.worker.main`: lower the resource limits, scan one file, print one JSON report).

Each child gets its own session (so the whole group can be killed), /dev/null as stdin, its own stdout and stderr
pipes, and no other file descriptor; on Linux it is killed if the fork server dies (PR_SET_PDEATHSIG). The fork
server never opens an uploaded file and holds nothing a child could use: it reads requests (a path and limits) and
answers with the child's exit status, its output (capped) and the tail of its stderr. It is single-threaded, so
forking is safe, and it exits when its parent closes the request pipe. Children share the fork server's memory
layout; :mod:`scanners.sandbox` restarts it after any child that did not exit cleanly and after a number of scans.

Wire format, both ways: a 4-byte big-endian length, then that many bytes. A request is one JSON frame
(``argv`` for :func:`scanners.worker.main`, ``timeout_s``, ``max_output``); an answer is a JSON frame
(``returncode`` as :class:`subprocess.Popen` reports it, ``timed_out``, ``output_truncated``, ``stderr``)
followed by a frame holding the child's stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

LENGTH = struct.Struct(">I")
MAX_REQUEST_BYTES = 1 << 20
STDERR_TAIL_BYTES = 4096
_READ = 1 << 16


def read_exact(fd: int, n: int) -> bytes | None:
    """``n`` bytes from ``fd``; None at a clean end of stream before the first byte, EOFError in the middle."""
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            if buf:
                raise EOFError("stream ended inside a frame")
            return None
        buf += chunk
    return bytes(buf)


def read_frame(fd: int, limit: int) -> bytes | None:
    head = read_exact(fd, LENGTH.size)
    if head is None:
        return None
    (size,) = LENGTH.unpack(head)
    if size > limit:
        raise ValueError(f"frame of {size} bytes exceeds {limit}")
    body = read_exact(fd, size) if size else b""
    if body is None:
        raise EOFError("stream ended inside a frame")
    return body


def write_frame(fd: int, data: bytes) -> None:
    view = memoryview(LENGTH.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


# prctl(2), looked up once in the fork server (Linux only): a child must not import ctypes to use it.
_PRCTL: Callable[[int, int], int] | None = None
_PR_SET_PDEATHSIG = 1


def _child(argv: list[str], out_w: int, err_w: int, server: int) -> NoReturn:
    """In the forked child: a new session, only stdin (/dev/null), stdout and stderr open, then the scan."""
    try:
        os.setsid()
        # Its own session puts the child out of reach of a kill of the fork server's group: without this, a child
        # blocked in a parser outlived a fork server that died or was killed for not answering, for ever.
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != server:  # the fork server died before the line above
                os._exit(70)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        from scanners.worker import main

        code = main(argv)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    except SystemExit as exc:
        os._exit(exc.code if isinstance(exc.code, int) else 2)
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
            sys.stderr.flush()
        os._exit(70)


def _collect(pid: int, out_r: int, err_r: int, deadline: float, max_output: int) -> tuple[bytes, bytes, bool, bool]:
    """Read the child's stdout (up to ``max_output`` + 1 bytes) and the tail of its stderr until both close,
    the deadline passes or the output is too large."""
    out, err = bytearray(), bytearray()
    timed_out = truncated = False
    with selectors.DefaultSelector() as selector:
        selector.register(out_r, selectors.EVENT_READ, out)
        selector.register(err_r, selectors.EVENT_READ, err)
        while selector.get_map() and not truncated:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _events in selector.select(left):
                chunk = os.read(key.fd, _READ)
                if not chunk:
                    selector.unregister(key.fd)
                elif key.data is err:
                    err += chunk
                    del err[:-STDERR_TAIL_BYTES]
                else:
                    out += chunk
                    truncated = len(out) > max_output
    return bytes(out), bytes(err), timed_out, truncated


def _reap(pid: int, deadline: float, kill: bool) -> tuple[int, bool]:
    """Wait for the child (killing its group at the deadline, or now if ``kill``); its exit code, timed out."""
    timed_out = False
    if kill:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() >= deadline:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.002)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # anything the child left behind in its session
    return os.waitstatus_to_exitcode(status), timed_out


def run_one(request: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """Fork a child for one scan and wait for it; the answer's header and the child's stdout."""
    argv = [str(arg) for arg in request["argv"]]
    deadline = time.monotonic() + float(request["timeout_s"])
    max_output = int(request["max_output"])
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    server = os.getpid()
    pid = os.fork()
    if pid == 0:
        _child(argv, out_w, err_w, server)
    os.close(out_w)
    os.close(err_w)
    try:
        out, err, timed_out, truncated = _collect(pid, out_r, err_r, deadline, max_output)
    finally:
        os.close(out_r)
        os.close(err_r)
    returncode, late = _reap(pid, deadline, kill=timed_out or truncated)
    header = {"returncode": returncode, "timed_out": timed_out or late, "output_truncated": truncated,
              "stderr": err.decode("utf-8", "replace")}
    return header, out


def main() -> int:
    """Serve requests on stdin until the parent closes it. Stdout carries answers only."""
    requests, answers = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)  # a stray print here can never corrupt the answers
    os.close(null)
    import scanners.api  # noqa: F401  (warm: every child starts with the scanners imported)

    global _PRCTL
    if sys.platform.startswith("linux"):
        import ctypes

        _PRCTL = ctypes.CDLL(None, use_errno=True).prctl

    while True:
        try:
            frame = read_frame(requests, MAX_REQUEST_BYTES)
        except (EOFError, ValueError):
            return 1
        if frame is None:
            return 0
        header, output = run_one(json.loads(frame))
        write_frame(answers, json.dumps(header).encode())
        write_frame(answers, output)
