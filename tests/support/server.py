"""Start the real ``mir serve`` on a free loopback port, as a user would."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

MIR = [sys.executable, "-m", "registry.main"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    admin_token: str
    data_dir: Path
    config_dir: Path
    database_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, token: str | None = None, **extra: str) -> dict[str, str]:
        """Environment for a CLI run against this server (its own config dir, so nothing leaks)."""
        env = {**os.environ, **self.extra_env, "MIR_URL": self.url, "MIR_CONFIG_DIR": str(self.config_dir)}
        env["MIR_TOKEN"] = token if token is not None else self.admin_token
        env["COLUMNS"] = "400"  # rich would otherwise truncate tables to 80 columns when piped
        env.update(extra)
        env.pop("MIR_DATABASE_URL", None)
        return env

    def cli(
        self, *args: str, token: str | None = None, check: bool = False, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        """Run the real ``mir`` CLI in a subprocess and return its result."""
        result = subprocess.run(
            [*MIR, *args], env=self.env(token, **extra), capture_output=True, text=True, timeout=600,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            detail = f"{result.stdout}\n{result.stderr}"
            raise AssertionError(f"mir {' '.join(args)} failed ({result.returncode}):\n{detail}")
        return result

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mir serve exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"mir serve did not become healthy in {timeout}s:\n{log_path.read_text()}")


@contextmanager
def live_server(
    database_url: str, workdir: Path, *, preexec: Any = None, env: dict[str, str] | None = None
) -> Iterator[LiveServer]:
    port = free_port()
    data_dir = workdir / "mir-data"
    config_dir = workdir / "config"
    log_path = workdir / "server.log"
    server_env = {
        **os.environ,
        "MIR_DATA_DIR": str(data_dir),
        "MIR_DATABASE_URL": database_url,
        "MIR_HOST": "127.0.0.1",
        "MIR_PORT": str(port),
        "MIR_CONFIG_DIR": str(config_dir),
        **(env or {}),
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*MIR, "serve"], env=server_env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log_path)
        creds = json.loads((config_dir / "credentials.json").read_text())
        yield LiveServer(url, creds["token"], data_dir, config_dir, database_url, process, log_path, env or {})
    finally:
        children = child_pids(process.pid)
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        _wait_gone(children)  # scan workers must be gone before the test drops their database


def child_pids(pid: int) -> list[int]:
    """The processes ``pid`` started from its main thread (``mir serve``'s scan workers)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Running (not merely a zombie waiting to be reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_gone(pids: list[int], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def run_gc(live: LiveServer, *args: str) -> dict[str, Any]:
    """``mir gc --json`` on the server machine: the server's settings, no token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIR_")}
    env.update(MIR_DATA_DIR=str(live.data_dir), MIR_DATABASE_URL=live.database_url, COLUMNS="400")
    done = subprocess.run([*MIR, "gc", "--json", *args], env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report
