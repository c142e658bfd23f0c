"""The scan fork server: each child is as isolated as a freshly started sandbox, and a failure never leaks into
the next scan."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scanners import Verdict, sandbox
from scanners.forkserver import read_frame, write_frame
from tests.scanners.corpus import os_system_pickle

ROOT = Path(__file__).resolve().parents[2]

# A fork server whose children run this probe instead of a scan: what a scan's process can see and do.
PROBE = textwrap.dedent(f"""
    import json, os, resource, sys
    sys.path.insert(0, {str(ROOT)!r})
    import scanners.worker as worker

    def probe(argv):
        if argv and argv[0] == "flood":
            sys.stdout.write("x" * int(argv[1]))
            return 0
        if argv and argv[0] == "hang":
            import time
            time.sleep(60)
        worker.apply_limits(7, 1 << 30, 1 << 20)
        print(json.dumps({{
            "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
            "env": sorted(os.environ),
            "own_session": os.getsid(0) == os.getpid(),
            "cpu_limit": resource.getrlimit(resource.RLIMIT_CPU)[0],
            "core_limit": resource.getrlimit(resource.RLIMIT_CORE)[0],
            "stdin": sys.stdin.read(),
            "pid": os.getpid(),
        }}))
        return 0

    worker.main = probe
    from scanners.forkserver import main
    sys.exit(main())
""")


@pytest.fixture
def probe_server() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-I", "-c", PROBE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env={"LANG": "C.UTF-8"})
    yield proc
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0  # it exits when its parent closes the request pipe


def _ask(proc: subprocess.Popen[bytes], argv: list[str], timeout_s: float = 10,
         max_output: int = 1 << 20) -> tuple[dict[str, Any], bytes]:
    assert proc.stdin is not None and proc.stdout is not None
    write_frame(proc.stdin.fileno(), json.dumps({"argv": argv, "timeout_s": timeout_s,
                                                 "max_output": max_output}).encode())
    header, output = read_frame(proc.stdout.fileno(), 1 << 20), read_frame(proc.stdout.fileno(), 1 << 24)
    assert header is not None and output is not None
    return json.loads(header), output


def test_a_child_sees_only_its_own_pipes_in_its_own_session(probe_server: subprocess.Popen[bytes]) -> None:
    header, output = _ask(probe_server, [])
    assert header == {"returncode": 0, "timed_out": False, "output_truncated": False, "stderr": ""}
    seen = json.loads(output)
    assert seen["fds"] == [0, 1, 2, 3]  # stdin, stdout, stderr and the listing's own descriptor: nothing else
    assert seen["own_session"] is True
    assert seen["stdin"] == ""  # /dev/null, not the request pipe
    assert (seen["cpu_limit"], seen["core_limit"]) == (7, 0)
    assert set(seen["env"]) <= {"LANG", "LC_CTYPE"}  # what the fork server was started with


def test_the_fork_server_gets_none_of_the_services_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIR_DATABASE_URL", "postgresql://mir:hunter2@db/mir")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    sandbox._FORK_SERVER._stop()
    fine = tmp_path / "fine.pkl"
    fine.write_bytes(b"\x80\x02N.")
    assert sandbox.scan_path_sandboxed(fine).verdict is Verdict.CLEAN
    server = sandbox._FORK_SERVER._proc
    assert server is not None
    environ = Path(f"/proc/{server.pid}/environ").read_bytes()
    assert b"hunter2" not in environ
    names = {item.split(b"=", 1)[0].decode() for item in environ.split(b"\0") if item}
    assert names <= {"LANG", "PATH", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"}


def test_each_scan_is_a_new_process_and_limits_do_not_carry_over(probe_server: subprocess.Popen[bytes]) -> None:
    first = json.loads(_ask(probe_server, [])[1])
    second = json.loads(_ask(probe_server, [])[1])
    assert first["pid"] != second["pid"]
    assert first["pid"] != probe_server.pid


def test_a_hanging_child_is_killed_at_the_deadline(probe_server: subprocess.Popen[bytes]) -> None:
    header, _ = _ask(probe_server, ["hang"], timeout_s=0.5)
    assert header["timed_out"] is True
    assert header["returncode"] == -signal.SIGKILL
    assert _ask(probe_server, [])[0]["returncode"] == 0  # and the fork server serves the next request


def test_a_flood_of_output_is_cut_off(probe_server: subprocess.Popen[bytes]) -> None:
    header, output = _ask(probe_server, ["flood", str(5 << 20)], max_output=1 << 20)
    assert header["output_truncated"] is True
    assert len(output) <= (1 << 20) + (1 << 16)


def test_the_sandbox_replaces_a_fork_server_that_died(tmp_path: Path) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(os_system_pickle(2))
    assert sandbox.scan_path_sandboxed(path).verdict is Verdict.MALICIOUS
    server = sandbox._FORK_SERVER._proc
    assert server is not None
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    report = sandbox.scan_path_sandboxed(path)  # retried once with a new fork server
    assert report.verdict is Verdict.MALICIOUS
    assert sandbox._FORK_SERVER._proc is not None and sandbox._FORK_SERVER._proc.pid != server.pid


def test_the_sandbox_replaces_the_fork_server_after_a_scan_that_failed(tmp_path: Path) -> None:
    slow = tmp_path / "slow.pkl"
    slow.write_bytes(b"\x80\x04" + b"K\x01\x940" * 1_500_000 + b"N.")
    fine = tmp_path / "fine.pkl"
    fine.write_bytes(b"\x80\x02N.")
    assert sandbox.scan_path_sandboxed(fine).verdict is Verdict.CLEAN
    before = sandbox._FORK_SERVER._proc
    assert sandbox.scan_path_sandboxed(slow, timeout_s=0.5).verdict is Verdict.ERROR
    assert sandbox._FORK_SERVER._proc is None  # stopped: the next scan gets a fork server no child has touched
    assert sandbox.scan_path_sandboxed(fine).verdict is Verdict.CLEAN
    assert sandbox._FORK_SERVER._proc is not before


# --- Review of the fork server as an attacker: a child that blocks, wedges the fork server or is orphaned, callers
# on several threads, a caller interrupted mid-scan and a parent that forks. The sandbox's own fork servers run a
# probe that reads the file first: ``BLOCK <fifo> <path>`` waits for the test to close the FIFO, then scans
# <path>; ``WEDGE`` acts as a parser exploit would: it writes half an answer frame into the fork server's answer
# pipe and stops the fork server. Anything else is scanned as usual.

SANDBOX_PROBE = textwrap.dedent(f"""
    import os, signal, struct, sys
    sys.path.insert(0, {str(ROOT)!r})
    import scanners.worker as worker
    real_main = worker.main

    def wedge():
        server = os.getppid()
        for fd in os.listdir(f"/proc/{{server}}/fd"):
            if not os.readlink(f"/proc/{{server}}/fd/{{fd}}").startswith("pipe:"):
                continue
            with open(f"/proc/{{server}}/fdinfo/{{fd}}") as info:
                flags = next(int(line.split()[1], 8) for line in info if line.startswith("flags:"))
            if flags & 3 == os.O_WRONLY:  # the answer stream
                answers = os.open(f"/proc/{{server}}/fd/{{fd}}", os.O_WRONLY)
                os.write(answers, struct.pack(">I", 100) + b"{{")
        os.kill(server, signal.SIGSTOP)
        return 0

    def probe(argv):
        with open(argv[-1], "rb") as f:
            head = f.read(4096)
        if head.startswith(b"BLOCK "):
            fifo, path = head[6:].decode().split()
            with open(fifo, "rb") as f:
                f.read()
            return real_main(argv[:-1] + [path])
        if head.startswith(b"WEDGE"):
            return wedge()
        return real_main(argv)

    worker.main = probe
    from scanners.forkserver import main
    sys.exit(main())
""")


def _stop_all_fork_servers() -> None:
    for server in sandbox._POOL.servers() if hasattr(sandbox, "_POOL") else [sandbox._FORK_SERVER]:
        server._stop()


@pytest.fixture
def sandbox_probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    _stop_all_fork_servers()
    monkeypatch.setattr(sandbox, "_BOOT", SANDBOX_PROBE)
    yield
    _stop_all_fork_servers()


@pytest.fixture
def fine(tmp_path: Path) -> Path:
    path = tmp_path / "fine.pkl"
    path.write_bytes(b"\x80\x02N.")
    return path


def _blocking_file(tmp_path: Path, then_scan: Path) -> tuple[Path, Path]:
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    blocking = tmp_path / "blocking.bin"
    blocking.write_bytes(f"BLOCK {fifo} {then_scan}".encode())
    return blocking, fifo


def _wait_for_reader(fifo: Path) -> int:
    """A write end of ``fifo`` once a scan child has opened it: the child then blocks until it is closed."""
    deadline = time.monotonic() + 60  # only a safety net: the child opens it within a second
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _release(fifo: Path, thread: threading.Thread) -> None:
    """Let every child that is (or will be) blocked on ``fifo`` go until ``thread`` is done."""
    while thread.is_alive():
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(0.05)


def _scan_in_thread(path: Path, results: list[Any], **kwargs: Any) -> threading.Thread:
    thread = threading.Thread(target=lambda: results.append(sandbox.scan_path_sandboxed(path, **kwargs)),
                              daemon=True)
    thread.start()
    return thread


def test_a_blocked_scan_does_not_hold_up_scans_on_other_threads(tmp_path: Path, fine: Path,
                                                                 sandbox_probe: None) -> None:
    """One fork server served one request at a time for the whole process: a tenant's file that hangs a parser
    stalled every other thread's scans for up to its timeout (600 s by default), with no bound on their wait."""
    blocking, fifo = _blocking_file(tmp_path, fine)
    first: list[Any] = []
    slow = _scan_in_thread(blocking, first, timeout_s=120)
    gate = _wait_for_reader(fifo)
    try:
        second: list[Any] = []
        other = _scan_in_thread(fine, second)
        other.join(60)
        assert not other.is_alive(), "a scan on another thread waited for the blocked one"
        assert second[0].verdict is Verdict.CLEAN
        assert slow.is_alive()
    finally:
        os.close(gate)
        _release(fifo, slow)
    assert first[0].verdict is Verdict.CLEAN


def test_a_scan_interrupted_by_an_exception_does_not_answer_the_next_scan(tmp_path: Path, fine: Path,
                                                                          sandbox_probe: None) -> None:
    """An exception raised in the caller (a signal handler's timeout, KeyboardInterrupt) between request and
    answer left the answer in the pipe: the next scan read it, so a malicious file came out clean."""
    blocking, fifo = _blocking_file(tmp_path, fine)
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(os_system_pickle(2))

    class Interrupted(Exception):
        pass

    interrupted = threading.Event()

    def handler(signum: int, frame: object) -> None:
        interrupted.set()
        raise Interrupted

    def interrupt_then_release() -> None:
        gate = _wait_for_reader(fifo)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)
        interrupted.wait(60)
        os.close(gate)  # the blocked child now finishes: a clean answer is on its way

    previous = signal.signal(signal.SIGUSR1, handler)
    helper = threading.Thread(target=interrupt_then_release, daemon=True)
    try:
        helper.start()
        with pytest.raises(Interrupted):
            sandbox.scan_path_sandboxed(blocking, timeout_s=120)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        helper.join(60)
    assert sandbox.scan_path_sandboxed(evil).verdict is Verdict.MALICIOUS


def test_a_wedged_fork_server_cannot_hang_the_caller_mid_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                sandbox_probe: None) -> None:
    """The caller's deadline covered only the first byte of the answer: a fork server that stopped half way through
    a frame (here a compromised child wrote half a frame and stopped it) blocked the caller, and every later
    scan behind the lock, for ever."""
    monkeypatch.setattr(sandbox, "_ANSWER_GRACE_S", 1.0)
    wedge = tmp_path / "wedge.bin"
    wedge.write_bytes(b"WEDGE")
    result: list[Any] = []
    thread = _scan_in_thread(wedge, result, timeout_s=1)
    thread.join(60)
    if thread.is_alive():  # unblock it: a killed fork server ends the read
        for server in [sandbox._FORK_SERVER]:
            if server._proc is not None:
                os.killpg(server._proc.pid, signal.SIGKILL)
    assert not thread.is_alive(), "the caller hung on a half-written answer"
    assert result[0].verdict is Verdict.ERROR
    assert "did not answer in time" in result[0].findings[0].message


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def test_a_scan_child_does_not_outlive_its_fork_server(tmp_path: Path, fine: Path, sandbox_probe: None) -> None:
    """Each child has its own session, so killing the fork server (the sandbox does when it stops answering)
    left a child blocked in a parser running for ever, holding its memory: one per such upload."""
    blocking, fifo = _blocking_file(tmp_path, fine)
    result: list[Any] = []
    thread = _scan_in_thread(blocking, result, timeout_s=120)
    gate = _wait_for_reader(fifo)
    server = sandbox._FORK_SERVER._proc
    assert server is not None
    (child,) = _children(server.pid)
    try:
        os.kill(server.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30  # a safety net, not a measurement
        while _running(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _running(child), "the scan child outlived its fork server"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        os.close(gate)
        _release(fifo, thread)
    assert result[0].verdict is Verdict.CLEAN  # the retry, on a new fork server


def test_a_forked_process_scans_with_its_own_fork_server(tmp_path: Path, fine: Path, sandbox_probe: None) -> None:
    """A process that forks while another thread scans (a prefork server, multiprocessing's fork) inherited a
    held lock, so its first scan waited for ever, and the parent's request pipe, so the parent's fork server
    never saw its end."""
    blocking, fifo = _blocking_file(tmp_path, fine)
    result: list[Any] = []
    thread = _scan_in_thread(blocking, result, timeout_s=120)
    gate = _wait_for_reader(fifo)
    try:
        server = sandbox._FORK_SERVER._proc
        assert server is not None and server.stdin is not None
        request_pipe = os.fstat(server.stdin.fileno())
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the forked copy of the test)
            code = 2
            try:
                code = 0 if sandbox.scan_path_sandboxed(fine).verdict is Verdict.CLEAN else 1
                with contextlib.suppress(OSError):
                    still = os.fstat(server.stdin.fileno())
                    if (still.st_dev, still.st_ino) == (request_pipe.st_dev, request_pipe.st_ino):
                        code = 3
            finally:
                os._exit(code)
        deadline = time.monotonic() + 60  # a safety net, not a measurement
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        if done[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked process's scan hung on the lock it inherited")
        assert os.waitstatus_to_exitcode(done[1]) == 0, "3: the parent's request pipe stayed open in the fork"
    finally:
        os.close(gate)
        _release(fifo, thread)
    assert result[0].verdict is Verdict.CLEAN
