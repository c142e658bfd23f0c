"""A push killed half way commits nothing and resumes; memory is bounded by the chunk size."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.client.http import MirClient, MirError
from tests.support.databases import BACKENDS, database_url
from tests.support.server import LiveServer, live_server
from tests.support.trees import make_tree

MiB = 1 << 20


@pytest.fixture(params=BACKENDS)
def fresh_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    with database_url(request.param, tmp_path) as url, live_server(url, tmp_path) as live:
        yield live


def _write_random(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        block = os.urandom(MiB)
        for i in range(size // MiB):
            fh.write(block[i % 7 :] + block[: i % 7])


def _part_files(server: LiveServer) -> list[Path]:
    return list((server.data_dir / "blobs" / "tmp").glob("*.part"))


SLOW_UPLOAD = textwrap.dedent(
    """
    import sys, time, httpx
    from pathlib import Path
    from registry.client.http import MirClient
    from signing.hashing import hash_directory
    url, token, src, ref = sys.argv[1:5]
    manifest = hash_directory(src)
    client = MirClient(url, token)
    opened = client.open_version(ref, manifest)
    big = max(manifest.files, key=lambda f: f.size)
    def slow():
        with open(Path(src) / big.path, "rb") as fh:
            yield fh.read(4 << 20)
            print("half-sent", flush=True)
            time.sleep(600)
    repo, version = ref.split("@")
    httpx.put(f"{url}/v1/artifacts/{repo}/versions/{version}/blobs/{big.digest}", content=slow(),
              headers={"Authorization": f"Bearer {token}", "Content-Length": str(big.size)}, timeout=900)
    """
)


def test_killed_push_commits_nothing_and_resumes(fresh_server: LiveServer, tmp_path: Path) -> None:
    server = fresh_server
    src = make_tree(tmp_path / "src", {"config.json": b"{}", "notes.txt": b"v1"})
    _write_random(src / "weights.bin", 32 * MiB)
    with MirClient(server.url, server.admin_token) as client:
        client.push(make_tree(tmp_path / "old", {"a.txt": b"committed before"}), "acme/crashy@0.9")

    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_UPLOAD, server.url, server.admin_token, str(src), "acme/crashy@1.0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "half-sent"
    deadline = time.monotonic() + 10
    while not _part_files(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _part_files(server), "the server should be writing a temp file mid-upload"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    with MirClient(server.url, server.admin_token) as client:
        with pytest.raises(MirError) as exc:
            client.show_version("acme/crashy@1.0")
        assert exc.value.code == "version_not_found"
        with pytest.raises(MirError) as exc:
            client.commit("acme/crashy@1.0")
        assert exc.value.code == "blobs_missing"
        assert client.show_version("acme/crashy")["version"] == "0.9"
    deadline = time.monotonic() + 10
    while _part_files(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _part_files(server), "an aborted upload must not leave its temp file behind"

    resumed = server.cli("push", str(src), "acme/crashy@1.0", check=True)
    assert "committed acme/crashy@1.0" in resumed.stdout
    server.cli("pull", "acme/crashy@1.0", str(tmp_path / "out"), check=True)
    assert (tmp_path / "out" / "weights.bin").read_bytes() == (src / "weights.bin").read_bytes()
    server.cli("pull", "acme/crashy@0.9", str(tmp_path / "old-out"), check=True)
    assert (tmp_path / "old-out" / "a.txt").read_bytes() == b"committed before"


def test_server_killed_mid_upload_stays_consistent(tmp_path: Path) -> None:
    """SIGKILL the server while a blob streams in; after restart nothing is half-stored and the push resumes."""
    src = make_tree(tmp_path / "src", {"config.json": b"{}"})
    _write_random(src / "weights.bin", 32 * MiB)
    with database_url("sqlite", tmp_path) as url:
        with live_server(url, tmp_path) as server:
            proc = subprocess.Popen(
                [sys.executable, "-c", SLOW_UPLOAD, server.url, server.admin_token, str(src), "acme/srvcrash@1"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            assert proc.stdout is not None and proc.stdout.readline().strip() == "half-sent"
            time.sleep(0.3)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
            proc.kill()
            proc.wait()
        with live_server(url, tmp_path) as server:
            blobs = [p for p in (server.data_dir / "blobs" / "sha256").rglob("*") if p.is_file()]
            assert all(len(p.name) == 64 for p in blobs)
            with MirClient(server.url, server.admin_token) as client:
                with pytest.raises(MirError):
                    client.show_version("acme/srvcrash@1")
                done = client.push(src, "acme/srvcrash@1")
                assert done["state"] == "committed"
                client.pull("acme/srvcrash@1", tmp_path / "out")
            assert (tmp_path / "out" / "weights.bin").read_bytes() == (src / "weights.bin").read_bytes()


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


CLIENT_WITH_RSS = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from registry.client.http import MirClient
    url, token, op, a, b = sys.argv[1:6]
    with MirClient(url, token) as c:
        c.push(a, b) if op == "push" else c.pull(a, b)
    # VmHWM belongs to this process's own address space; ru_maxrss would include the parent's RSS at fork.
    hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
    print(int(hwm.split()[1]) / 1024)
    """
)


@pytest.mark.slow
def test_memory_is_bounded_by_chunk_size_not_file_size(tmp_path: Path) -> None:
    """Push and pull a 768 MiB file: neither server nor client grows by anything near the file size."""
    size = 768 * MiB
    src = tmp_path / "src"
    _write_random(src / "big.bin", size)
    with database_url("sqlite", tmp_path) as url, live_server(url, tmp_path) as server:
        baseline = _peak_rss_mib(server.process.pid)
        results = {}
        for op, a, b in (("push", str(src), "acme/huge@1"), ("pull", "acme/huge@1", str(tmp_path / "out"))):
            run = subprocess.run(
                [sys.executable, "-c", CLIENT_WITH_RSS, server.url, server.admin_token, op, a, b],
                capture_output=True, text=True, check=True,
            )
            results[op] = float(run.stdout.strip().splitlines()[-1])
        server_growth = _peak_rss_mib(server.process.pid) - baseline
    assert server_growth < 96, f"server peak RSS grew by {server_growth:.0f} MiB for a {size >> 20} MiB file"
    assert results["push"] < 200 and results["pull"] < 200, f"client peak RSS (MiB): {results}"
    assert (tmp_path / "out" / "big.bin").stat().st_size == size
