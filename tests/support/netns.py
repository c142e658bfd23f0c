"""Separate hosts on one machine: Linux network namespaces joined by veth pairs on a private bridge.

Each host has its own network stack and address (10.213.N.H/24); processes started on it can reach only the
other test hosts, never the machine's own loopback services. The test process itself sits on the bridge as
``.1``, like an operator's laptop on the same network. Needs root (CAP_NET_ADMIN); where namespaces cannot be
made, ``Network`` fails with the reason, so a multi-host test never passes without its hosts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class NamespaceUnavailable(RuntimeError):
    """This sandbox cannot create network namespaces (not root, or no CAP_NET_ADMIN)."""


def _run(*argv: str) -> None:
    """A network tool (``ip``, ``tc``); its failure says what it could not do."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise NamespaceUnavailable(f"`{' '.join(argv)}` failed: {done.stderr.strip() or done.returncode}")


def _ip(*args: str) -> None:
    _run("ip", *args)


@dataclass
class Host:
    """One namespace with one address; ``start`` runs a process there (its output goes to ``log``)."""

    name: str
    namespace: str
    address: str
    link: str = ""  # the bridge's end of the host's veth pair: what the host receives leaves the bridge there
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @contextlib.contextmanager
    def slow_link(self, mbit_per_s: int) -> Iterator[None]:
        """Traffic into the host limited to ``mbit_per_s`` (a token bucket on the bridge's end of its link), so
        an upload to it takes seconds however fast the machine: a test can act while the bytes still flow."""
        _run("tc", "qdisc", "add", "dev", self.link, "root", "tbf", "rate", f"{mbit_per_s}mbit", "burst", "64kb",
             "latency", "500ms")
        try:
            yield
        finally:
            with contextlib.suppress(NamespaceUnavailable):
                _run("tc", "qdisc", "del", "dev", self.link, "root")

    def start(self, argv: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            process = subprocess.Popen(["ip", "netns", "exec", self.namespace, *argv], env=env, stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Network:
    """A bridge and hosts on it; everything is removed on exit (namespaces, links, processes)."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.tag = tag
        self.bridge = f"mirbr{tag}"
        self.subnet = f"10.213.{int(tag[:2], 16)}"
        self.hosts: list[Host] = []
        self._next = 2

    def __enter__(self) -> Network:
        if os.geteuid() != 0:
            raise NamespaceUnavailable("network namespaces need root (CAP_NET_ADMIN); this test runs as "
                                       f"uid {os.geteuid()}")
        _ip("link", "add", self.bridge, "type", "bridge")
        try:
            _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def host(self, name: str) -> Host:
        """A new namespace on the bridge, with loopback up and the next free address."""
        index = self._next
        self._next += 1
        namespace = f"mir-{self.tag}-{name}"
        outside, inside = f"mv{self.tag}{index}", f"mh{self.tag}{index}"
        _ip("netns", "add", namespace)
        host = Host(name, namespace, f"{self.subnet}.{index}", outside)
        self.hosts.append(host)
        _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", namespace)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        _ip("-n", namespace, "addr", "add", f"{host.address}/24", "dev", inside)
        _ip("-n", namespace, "link", "set", inside, "up")
        return host

    def __exit__(self, *_exc: object) -> None:
        for host in reversed(self.hosts):
            host.stop_all()
            with contextlib.suppress(NamespaceUnavailable):
                _ip("netns", "del", host.namespace)  # takes its end of the veth pair, and so the pair, along
        with contextlib.suppress(NamespaceUnavailable):
            _ip("link", "del", self.bridge)


def kill_hard(process: subprocess.Popen[bytes]) -> None:
    """``kill -9``: no shutdown handler runs, as when a machine loses power."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@contextlib.contextmanager
def network() -> Iterator[Network]:
    with Network() as net:
        yield net
