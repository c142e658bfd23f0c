"""Fast transfers that stay safe: ``mir pull`` over parallel byte ranges (every byte hashed as it arrives,
nothing unverified under a final name) and ``mir push`` sending files with ``sendfile``.

The real server on loopback, the real client; between them, where a test needs
it, a hostile network (``tests.support.wire``): one that flips a byte of every
file response, or one that goes away mid-download. Small part sizes make a few
MiB behave like a multi-GiB model (many ranges over several connections).
"""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import threading
from pathlib import Path

import pytest
from sqlalchemy import delete

from registry.artifacts.models import BlobChunks
from registry.client.download import Endpoint
from registry.client.http import MirClient, MirError
from signing.hashing import hash_directory
from tests.e2e.test_blob_integrity import blob_file, database, digest_of, flip
from tests.support.server import LiveServer
from tests.support.trees import make_tree
from tests.support.wire import wire_to

MiB = 1 << 20
SIZE = 9 * MiB + 12345  # ten 1 MiB parts, the last one short


def published(server: LiveServer, tmp: Path, ref: str, size: int = SIZE) -> bytes:
    data = os.urandom(size)
    with MirClient(server.url, server.admin_token) as client:
        client.push(make_tree(tmp / "src", {"w.bin": data}), ref)
    return data


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob(".*mir-part"))


def test_parallel_ranges_deliver_the_exact_file(server: LiveServer, tmp_path: Path) -> None:
    data = published(server, tmp_path, "fast/ranges@1")
    with wire_to(server.url) as wire, MirClient(wire.url, server.admin_token) as client:
        result = client.pull("fast/ranges@1", tmp_path / "out", connections=4, part_size=MiB)
    assert result["downloaded_files"] == 1
    assert (tmp_path / "out" / "w.bin").read_bytes() == data
    assert wire.statuses.count(206) == 10 and 200 in wire.statuses  # ten ranges (and the JSON calls)
    assert leftovers(tmp_path / "out") == []


def test_several_files_at_once_each_verified(server: LiveServer, tmp_path: Path) -> None:
    files = {f"shard-{i}.bin": os.urandom(3 * MiB + i) for i in range(5)} | {"config.json": b"{}"}
    with MirClient(server.url, server.admin_token) as client:
        client.push(make_tree(tmp_path / "src", files), "fast/many@1")
        result = client.pull("fast/many@1", tmp_path / "out", connections=8, part_size=MiB)
    assert result["downloaded_files"] == 6
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == files


def test_a_corrupted_stored_byte_inside_a_range_is_refused(server: LiveServer, tmp_path: Path) -> None:
    """The server checks the chunks a range covers; the pull fails and the old local file stays as it was."""
    data = published(server, tmp_path, "fast/rotten@1")
    flip(blob_file(server.data_dir, digest_of(data)), 6 * MiB + 321)
    out = make_tree(tmp_path / "out", {"w.bin": b"what was here before"})
    with MirClient(server.url, server.admin_token) as client, pytest.raises(MirError) as exc:
        client.pull("fast/rotten@1", out, connections=4, part_size=MiB)
    assert exc.value.code == "blob_corrupt"
    assert (out / "w.bin").read_bytes() == b"what was here before"
    assert leftovers(out) == []


@pytest.mark.parametrize("connections", [1, 4])
def test_bytes_altered_on_the_wire_never_reach_the_final_name(
    server: LiveServer, tmp_path: Path, connections: int
) -> None:
    """The server sends good bytes, the network alters one per response: the client's own SHA-256 refuses."""
    published(server, tmp_path, f"fast/wire{connections}@1")
    out = tmp_path / "out"
    with (
        wire_to(server.url, flip_at=700_000) as wire,
        MirClient(wire.url, server.admin_token) as client,
        pytest.raises(MirError) as exc,
    ):
        client.pull(f"fast/wire{connections}@1", out, connections=connections, part_size=MiB)
    assert exc.value.code == "digest_mismatch"
    assert not (out / "w.bin").exists()
    assert leftovers(out) == []


def test_an_interrupted_pull_resumes_from_its_verified_prefix(server: LiveServer, tmp_path: Path) -> None:
    """The network goes away after 6 MiB: the part file keeps only bytes hashed in order; the next pull
    hashes that prefix again, fetches the rest only, and the result verifies."""
    data = published(server, tmp_path, "fast/resume@1")
    out = tmp_path / "out"
    with (
        wire_to(server.url, cut_after=6 * MiB) as wire,
        MirClient(wire.url, server.admin_token) as client,
        pytest.raises(MirError) as exc,
    ):
        client.pull("fast/resume@1", out, connections=1, part_size=MiB)
    assert exc.value.code == "unreachable"
    assert not (out / "w.bin").exists()
    part = out / ".w.bin.mir-part"
    kept = part.read_bytes()
    assert 0 < len(kept) <= 6 * MiB and kept == data[: len(kept)]
    with wire_to(server.url) as wire, MirClient(wire.url, server.admin_token) as client:
        result = client.pull("fast/resume@1", out, connections=4, part_size=MiB)
    assert result["downloaded_files"] == 1
    assert (out / "w.bin").read_bytes() == data
    assert wire.bytes_down < SIZE - len(kept) + MiB  # the rest (plus headers and JSON), not the whole file
    assert leftovers(out) == []


def test_a_resumed_prefix_that_does_not_add_up_is_fetched_again(server: LiveServer, tmp_path: Path) -> None:
    """A part file whose bytes were altered on disk: the digest fails, the client starts over, the file verifies."""
    data = published(server, tmp_path, "fast/badprefix@1")
    out = make_tree(tmp_path / "out", {".w.bin.mir-part": bytes(3 * MiB)})
    with MirClient(server.url, server.admin_token) as client:
        client.pull("fast/badprefix@1", out, connections=4, part_size=MiB)
    assert (out / "w.bin").read_bytes() == data
    assert leftovers(out) == []


def test_a_blob_without_a_chunk_list_is_pulled_whole(server: LiveServer, tmp_path: Path) -> None:
    """Blobs stored before chunk lists answer a Range with the whole file (200): the client takes it in one GET."""
    data = published(server, tmp_path, "fast/legacy@1")
    with database(server.database_url) as engine, engine.begin() as conn:
        conn.execute(delete(BlobChunks).where(BlobChunks.digest == digest_of(data)))
    with wire_to(server.url) as wire, MirClient(wire.url, server.admin_token) as client:
        client.pull("fast/legacy@1", tmp_path / "out", connections=4, part_size=MiB)
    assert (tmp_path / "out" / "w.bin").read_bytes() == data
    # A range answered 200 (the whole file) restarts the pull as one plain GET; a connection already in flight
    # may still get a 206 if that whole-file read recorded the chunk list first (timing), which is also fine.
    assert 200 in wire.statuses
    assert leftovers(tmp_path / "out") == []


def test_an_upload_refused_before_its_body_is_read_reports_the_refusal(server: LiveServer, tmp_path: Path) -> None:
    """The server answers 400 before reading a 24 MiB body and closes: the client reports that answer, not a
    broken pipe."""
    src = make_tree(tmp_path / "src", {"w.bin": b"declared"})
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(24 * MiB))
    with MirClient(server.url, server.admin_token) as client:
        client.open_version("fast/refused@1", hash_directory(src))
        with pytest.raises(MirError) as exc:
            client.upload_blob("fast/refused@1", digest_of(big.read_bytes()), big)
    assert exc.value.code == "digest_not_in_manifest" and exc.value.status == 400


def test_an_upload_whose_file_changed_after_hashing_is_refused(server: LiveServer, tmp_path: Path) -> None:
    """sendfile sends what is on disk now; the server hashes it and refuses a digest that does not match."""
    data = os.urandom(6 * MiB)
    src = make_tree(tmp_path / "src", {"w.bin": data})
    with MirClient(server.url, server.admin_token) as client:
        manifest = hash_directory(src)
        client.open_version("fast/changed@1", manifest)
        (src / "w.bin").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        with pytest.raises(MirError) as exc:
            client.upload_blob("fast/changed@1", manifest.files[0].digest, src / "w.bin")
        assert exc.value.code == "digest_mismatch"
        (src / "w.bin").write_bytes(data)
        assert client.push(src, "fast/changed@1")["state"] == "committed"


class _ConnectProxy(socketserver.ThreadingTCPServer):
    """A minimal forward proxy that only tunnels (CONNECT), and remembers what it was asked for."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _ConnectHandler)


class _ConnectHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        server = self.server
        assert isinstance(server, _ConnectProxy)
        head = b""
        while not head.endswith(b"\r\n\r\n") and len(head) < 8192:
            byte = self.rfile.read(1)
            if not byte:
                return
            head += byte
        line = head.split(b"\r\n", 1)[0].decode()
        server.requests.append(line + (" auth" if b"Proxy-Authorization: Basic " in head else ""))
        method, target, _ = line.split(" ", 2)
        if method != "CONNECT":
            self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, port = target.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as upstream:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            pump = threading.Thread(target=_pump, args=(upstream, self.connection), daemon=True)
            pump.start()
            _pump(self.connection, upstream)
            pump.join(30)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(1 << 16):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)


def test_the_download_engine_goes_through_the_environment_s_proxy(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As httpx and curl do: HTTP(S)_PROXY is tunnelled through with CONNECT (with its credentials), NO_PROXY
    goes direct."""
    proxy = _ConnectProxy()
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        port = proxy.server_address[1]
        monkeypatch.setenv("HTTP_PROXY", f"http://user:p%40ss@127.0.0.1:{port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        for _ in range(2):
            conn = Endpoint(server.url, {}).connect()
            conn.request("GET", "/v1/health")
            assert conn.getresponse().read() and conn.close() is None
        target = server.url.removeprefix("http://")
        assert proxy.requests == [f"CONNECT {target} HTTP/1.0 auth"] * 2
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        conn = Endpoint(server.url, {}).connect()
        conn.request("GET", "/v1/health")
        assert conn.getresponse().status == 200
        conn.close()
        assert len(proxy.requests) == 2  # went direct
    finally:
        proxy.shutdown()
        proxy.server_close()
