"""Early uploads (``POST /v1/namespaces/{ns}/blobs`` while ``mir push`` still hashes) under stress: the real
client against the real server, on both databases. Each test is the regression test of one hole.

- A file that shrank while it was sent (rewritten in place: ``torch.save`` and most writers truncate first) left
  ``send_file`` waiting for an answer to a body it could no longer finish: the server, still owed bytes, never
  answers, so the upload (and a push awaiting it) hung for the whole read timeout (300 s) before failing.
- An early upload answered before the version was opened, whose bytes ``mir gc`` then collected (they are
  unreferenced until the open lists them, and a large tree can hash for longer than ``--min-age``), was taken
  as sent: the open reported the digest missing, the client sent nothing, and the commit failed. The client now
  sends again what the open still misses though its early upload had been answered, and counts every re-sent
  blob as uploaded.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from registry.client.download import Endpoint
from registry.client.early_upload import EARLY_MIN
from registry.client.http import MirClient
from registry.client.upload import UploadNetworkError, send_file
from tests.e2e.test_early_upload import temp_files
from tests.support.server import LiveServer, run_gc
from tests.support.trees import make_tree

EARLY_ROUTE = "POST /v1/namespaces/{namespace}/blobs"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _early_posts(server: LiveServer) -> int:
    return sum(EARLY_ROUTE in line for line in server.log().splitlines())


def test_a_file_that_shrinks_while_sent_fails_at_once_instead_of_awaiting_an_answer(
        server: LiveServer, tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(3 * EARLY_MIN))

    def rewrite_in_place(_n: int) -> None:  # after the first step: the writer truncated it and starts over
        if path.stat().st_size > 1000:
            os.truncate(path, 1000)

    endpoint = Endpoint(server.url, {"Authorization": f"Bearer {server.admin_token}"}, timeout=30)
    started = time.monotonic()
    with pytest.raises(UploadNetworkError, match="ended after"):
        send_file(endpoint, "POST", "/v1/namespaces/shrunk/blobs", path, rewrite_in_place)
    assert time.monotonic() - started < 10  # not the 30 s read timeout: nothing was waited for
    deadline = time.monotonic() + 10
    while temp_files(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not temp_files(server)  # the server dropped the cut-off body


def test_bytes_collected_between_an_early_upload_and_the_open_are_sent_again(
        server: LiveServer, tmp_path: Path) -> None:
    big = os.urandom(EARLY_MIN + 1)
    src = make_tree(tmp_path / "m", {"model.bin": big, "config.json": b"{}"})
    before = _early_posts(server)

    def progress(_count: int, _total: int):  # type: ignore[no-untyped-def]
        """Once listed, before hashing: the early upload is answered, then a collection takes its bytes
        (nothing lists them yet: the version is not open)."""
        deadline = time.monotonic() + 60
        while _early_posts(server) == before:
            assert time.monotonic() < deadline, "the early upload never arrived"
            time.sleep(0.05)
        collected = [c["digest"] for c in run_gc(server, "--min-age", "0s")["collected"]]
        assert _digest(big) in collected
        return lambda _n: None

    with MirClient(server.url, server.admin_token) as client:
        result = client.push(src, "gcrace/m@1", hash_progress=progress)
        assert result["state"] == "committed"
        assert (result["uploaded_blobs"], result["reused_blobs"]) == (2, 0)
        client.pull("gcrace/m@1", tmp_path / "out")
    assert (tmp_path / "out" / "model.bin").read_bytes() == big
