"""The scan fork server: each child is as isolated as a freshly started sandbox, and a failure never leaks into
the next scan."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
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
