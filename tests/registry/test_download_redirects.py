"""The pull engine follows a registry's redirect to a store URL: no credentials leave for the other host, the
bytes are hashed as from the registry, an expired URL is renewed, and redirect loops and odd schemes stop."""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from registry.client.download import DownloadError, Endpoint, FileJob, download_file

MiB = 1 << 20
DATA = os.urandom(9 * MiB + 17)
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


@dataclass
class Recorder:
    """What each fake host was asked, and how the registry answers (set per test)."""

    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    location: str = ""
    store_data: bytes = DATA
    refuse_first: int = 0  # the store answers 403 (an expired URL) this many times first

    def handler(self, host: str) -> type[BaseHTTPRequestHandler]:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def do_GET(self) -> None:
                recorder.seen.append((host, self.path, {k.lower(): v for k, v in self.headers.items()}))
                if host == "registry":
                    self.send_response(302)
                    self.send_header("Location", recorder.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if recorder.refuse_first > 0:
                    recorder.refuse_first -= 1
                    body = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
                    self.send_response(403)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                data, status = recorder.store_data, 200
                match = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
                if match:
                    start, end = int(match[1]), int(match[2])
                    data, status = data[start:end + 1], 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@pytest.fixture
def hosts() -> Iterator[tuple[Recorder, str, str]]:
    recorder = Recorder()
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), recorder.handler(name)) for name in ("registry", "store")]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    urls = [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
    recorder.location = f"{urls[1]}/bucket/blob?X-Amz-Signature=abc"
    try:
        yield recorder, urls[0], urls[1]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def pull(registry: str, target: Path, *, streams: int = 4, part_size: int = 2 * MiB) -> None:
    endpoint = Endpoint(registry, {"Authorization": "Bearer mir_secret", "User-Agent": "mir-test"}, timeout=30)
    job = FileJob("/v1/artifacts/acme/m/versions/1/files/w.bin", target, DIGEST, len(DATA))

    def error_from(status: int, body: bytes, _ctype: str) -> DownloadError:
        return DownloadError("http_error", f"HTTP {status}: {body[:80]!r}", status)

    download_file(endpoint, job, lambda _n: None, error_from, streams=streams, part_size=part_size)


def test_follows_to_the_store_without_credentials(hosts: tuple[Recorder, str, str], tmp_path: Path) -> None:
    recorder, registry, _store = hosts
    pull(registry, tmp_path / "w.bin")
    assert (tmp_path / "w.bin").read_bytes() == DATA
    store_requests = [headers for host, _path, headers in recorder.seen if host == "store"]
    assert len(store_requests) >= 5, "parallel ranges should come from the store"
    assert all("authorization" not in h and "if-range" not in h for h in store_requests)
    assert all(path.endswith("X-Amz-Signature=abc") for host, path, _ in recorder.seen if host == "store")
    assert all(h["authorization"] == "Bearer mir_secret" for host, _p, h in recorder.seen if host == "registry")


def test_bytes_from_the_store_are_checked(hosts: tuple[Recorder, str, str], tmp_path: Path) -> None:
    recorder, registry, _store = hosts
    rotten = bytearray(DATA)
    rotten[4 * MiB] ^= 1
    recorder.store_data = bytes(rotten)
    with pytest.raises(DownloadError) as exc:
        pull(registry, tmp_path / "w.bin")
    assert exc.value.code == "digest_mismatch"
    assert not (tmp_path / "w.bin").exists()


def test_an_expired_store_url_is_renewed_through_the_registry(
    hosts: tuple[Recorder, str, str], tmp_path: Path
) -> None:
    recorder, registry, _store = hosts
    recorder.refuse_first = 2
    pull(registry, tmp_path / "w.bin", streams=1, part_size=64 * MiB)
    assert (tmp_path / "w.bin").read_bytes() == DATA
    assert sum(1 for host, _p, _h in recorder.seen if host == "registry") == 3


def test_a_store_that_keeps_refusing_ends_the_pull(hosts: tuple[Recorder, str, str], tmp_path: Path) -> None:
    recorder, registry, _store = hosts
    recorder.refuse_first = 1000
    with pytest.raises(DownloadError, match="too many redirects"):
        pull(registry, tmp_path / "w.bin", streams=1, part_size=64 * MiB)
    assert len(recorder.seen) < 40


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x", "data:text/plain,x"])
def test_unusable_locations_are_refused(hosts: tuple[Recorder, str, str], tmp_path: Path, location: str) -> None:
    recorder, registry, _store = hosts
    recorder.location = location
    with pytest.raises(DownloadError, match="unusable URL"):
        pull(registry, tmp_path / "w.bin", streams=1)
    assert not (tmp_path / "w.bin").exists()


def test_a_redirect_loop_stops(hosts: tuple[Recorder, str, str], tmp_path: Path) -> None:
    recorder, registry, _store = hosts
    recorder.location = f"{registry}/again"
    with pytest.raises(DownloadError, match="too many redirects"):
        pull(registry, tmp_path / "w.bin", streams=1)
