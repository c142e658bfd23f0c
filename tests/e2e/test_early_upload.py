"""Large files sent while the push still hashes them (``POST /v1/namespaces/{ns}/blobs``, named by the server).

The real client against the real server: the bytes arrive, are stored under what they hash to and held by the
pushing namespace only; a re-push of unchanged files sends nothing early; a file that changes while it is
pushed fails the push; bodies that are cut short, unsized or refused store nothing.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from registry.client.early_upload import EARLY_MIN
from registry.client.http import MirClient, MirError
from signing.manifest import FileEntry, Manifest
from tests.support.server import LiveServer
from tests.support.trees import make_tree

EARLY_ROUTE = "POST /v1/namespaces/{namespace}/blobs"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _early_posts(server: LiveServer) -> list[str]:
    return [line for line in server.log().splitlines() if EARLY_ROUTE in line]


def _stored(server: LiveServer, digest: str) -> bool:
    hex_ = digest.removeprefix("sha256:")
    return (server.data_dir / "blobs" / "sha256" / hex_[:2] / hex_[2:4] / hex_).is_file()


def temp_files(server: LiveServer) -> list[Path]:
    """Uploads in progress (or left behind) in the server's blob directory. Only that directory is listed: a
    walk of the whole data directory can meet a scan's spool directory as it is removed."""
    return sorted((server.data_dir / "blobs" / "tmp").glob("*.part"))


def test_a_large_file_is_sent_while_hashed_and_a_repush_sends_nothing_early(
        server: LiveServer, tmp_path: Path) -> None:
    big = os.urandom(EARLY_MIN + 12345)
    files = {"model.safetensors": big, "config.json": b'{"layers": 2}', "mid.bin": os.urandom(300_000)}
    src = make_tree(tmp_path / "m", files)
    before = len(_early_posts(server))
    with MirClient(server.url, server.admin_token) as client:
        result = client.push(src, "early/one@1")
        assert result["state"] == "committed"
        assert (result["uploaded_blobs"], result["reused_blobs"]) == (3, 0)
        assert len(_early_posts(server)) == before + 1  # the large file only; the others after the open
        pulled = client.pull("early/one@1", tmp_path / "out")
        assert pulled["manifest_digest"] == result["manifest_digest"]
        assert (tmp_path / "out" / "model.safetensors").read_bytes() == big

        again = client.push(src, "early/one@2")  # the latest version has the file at this path and size
        assert (again["uploaded_blobs"], again["reused_blobs"]) == (0, 3)
        assert len(_early_posts(server)) == before + 1

        off = client.push(make_tree(tmp_path / "n", {"other.bin": os.urandom(EARLY_MIN)}), "early/two@1",
                          upload_while_hashing=False)
        assert off["uploaded_blobs"] == 1 and len(_early_posts(server)) == before + 1


def test_held_bytes_under_a_new_path_are_sent_early_and_the_push_still_reuses_nothing_twice(
        server: LiveServer, tmp_path: Path) -> None:
    big = os.urandom(EARLY_MIN)
    with MirClient(server.url, server.admin_token) as client:
        client.push(make_tree(tmp_path / "a", {"a.bin": big}), "early/held@1")
        moved = client.push(make_tree(tmp_path / "b", {"renamed.bin": big}), "early/moved@1")
        # Either the early upload finished before the open (sent again) or it was cancelled (reused): both are
        # right, and either way the version commits with the bytes it names.
        assert moved["state"] == "committed" and moved["uploaded_blobs"] + moved["reused_blobs"] == 1
        pulled = client.pull("early/moved@1", tmp_path / "out")
        assert pulled["file_count"] == 1 and (tmp_path / "out" / "renamed.bin").read_bytes() == big
    assert not temp_files(server)


def test_a_file_that_changes_while_pushed_fails_the_push(server: LiveServer, tmp_path: Path) -> None:
    first = os.urandom(EARLY_MIN)
    src = make_tree(tmp_path / "m", {"weights.bin": first})

    def change_after_sending(count: int, total: int) -> None:
        """Called once the tree is listed, before hashing: wait until the early upload stored the first
        bytes, then replace them, so the push hashes other bytes than it sent."""
        deadline = time.monotonic() + 60
        while not _stored(server, _digest(first)):
            assert time.monotonic() < deadline, "the early upload never arrived"
            time.sleep(0.05)
        (src / "weights.bin").write_bytes(os.urandom(EARLY_MIN))

    def progress(count: int, total: int):  # type: ignore[no-untyped-def]
        change_after_sending(count, total)
        return lambda _n: None

    with MirClient(server.url, server.admin_token) as client:
        with pytest.raises(MirError) as caught:
            client.push(src, "early/changed@1", hash_progress=progress)
        assert caught.value.code == "file_changed" and "weights.bin" in caught.value.message
        # Nothing was committed: the same push, run again once the file is still, resumes and commits its bytes.
        result = client.push(src, "early/changed@1", upload_while_hashing=False)
        assert result["state"] == "committed"
        client.pull("early/changed@1", tmp_path / "out")
        assert (tmp_path / "out" / "weights.bin").read_bytes() == (src / "weights.bin").read_bytes() != first


def _raw_request(server: LiveServer, token: str, head: str, body: bytes, *, cut: bool = False) -> bytes:
    """Send ``head`` and ``body`` on a connection of its own; the answer, read until the server closes.
    ``cut``: end the connection after the body (one shorter than its Content-Length) instead."""
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head.replace("{token}", token).encode() + body)
        if cut:
            return b""
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def test_cut_short_and_unsized_bodies_store_nothing(server: LiveServer, tmp_path: Path) -> None:
    part = os.urandom(50_000)
    head = ("POST /v1/namespaces/early/blobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Content-Length: 100000\r\n\r\n")
    _raw_request(server, server.admin_token, head, part, cut=True)  # the connection ends after half the body
    chunked = ("POST /v1/namespaces/early/blobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
               "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    # Refused on its headers: the body is not sent (bytes the server never reads would reset the connection
    # as it closes, and could take the answer with them).
    answer = _raw_request(server, server.admin_token, chunked, b"")
    assert answer.startswith(b"HTTP/1.1 411") and b"length_required" in answer
    deadline = time.monotonic() + 10
    while temp_files(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not temp_files(server) and not _stored(server, _digest(part))


def test_only_writers_of_the_namespace_may_send_and_holding_stays_with_the_sender(
        server: LiveServer, tmp_path: Path) -> None:
    data = os.urandom(70_000)
    with MirClient(server.url, server.admin_token) as admin:
        writer = admin.create_token("early-writer", ["write:early-a"])["token"]
        reader = admin.create_token("early-reader", ["read:early-a"])["token"]
        other = admin.create_token("early-other", ["write:early-b"])["token"]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for token in (reader, other):
            refused = http.post("/v1/namespaces/early-a/blobs", content=data,
                                headers={"Authorization": f"Bearer {token}"})
            assert refused.status_code in (403, 404), refused.text
        assert not _stored(server, _digest(data))
        assert http.post("/v1/namespaces/early-a/blobs", content=data).status_code == 401
        sent = http.post("/v1/namespaces/early-a/blobs", content=data, headers={"Authorization": f"Bearer {writer}"})
        assert sent.status_code == 200, sent.text
        assert sent.json() == {"digest": _digest(data), "size": len(data), "stored": "new"}
        again = http.post("/v1/namespaces/early-a/blobs", content=data, headers={"Authorization": f"Bearer {writer}"})
        assert again.json() == sent.json()  # the same answer whether or not the bytes were there
    manifest = Manifest.from_entries([FileEntry("w.bin", len(data), _digest(data))])
    with MirClient(server.url, writer) as sender:  # its namespace holds the bytes: nothing is missing
        assert sender.open_version("early-a/m@1", manifest)["missing"] == []
    with MirClient(server.url, other) as stranger:  # another namespace must send them itself
        assert stranger.open_version("early-b/m@1", manifest)["missing"] == [_digest(data)]


def test_an_oversized_body_is_refused_before_it_is_read(server: LiveServer) -> None:
    head = ("POST /v1/namespaces/early/blobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: {1 << 50}\r\nConnection: close\r\n\r\n")
    answer = _raw_request(server, server.admin_token, head, b"")  # headers only: see the test above
    assert answer.startswith(b"HTTP/1.1 413") and b"blob_too_large" in answer
    assert not temp_files(server)
