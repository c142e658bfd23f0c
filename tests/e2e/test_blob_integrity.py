"""Corrupted storage is never served as genuine: one flipped byte on disk, every download path refuses it.

Each test corrupts a blob of the real server's store, then drives the real
clients (httpx, the ``mir`` CLI, ``huggingface_hub``, ``load_verified``) and
checks that no client completes the download, that the blob is marked and
audited, and that verification and bundles refuse the version. ``mir fsck``
runs against the store directly, as an operator would on the server machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, delete, select

from registry.artifacts.models import Blob, BlobChunks
from registry.client.http import MirClient, MirError
from registry.client.loader import LoaderError, load_verified
from registry.core.db import make_engine
from tests.e2e.test_hf_read import run_hf
from tests.support.gate import Namespace, safetensors_model
from tests.support.server import MIR, LiveServer, live_server
from tests.support.trees import make_tree

MiB = 1 << 20


@contextmanager
def database(server_url: str) -> Iterator[Engine]:
    engine = make_engine(server_url)
    try:
        yield engine
    finally:
        engine.dispose()


def blob_file(data_dir: Path, digest: str) -> Path:
    hex_ = digest.removeprefix("sha256:")
    return data_dir / "blobs" / "sha256" / hex_[:2] / hex_[2:4] / hex_


def flip(path: Path, offset: int) -> None:
    """Flip every bit of one stored byte, in place (what a failing disk does)."""
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push(server: LiveServer, tmp: Path, ref: str, files: dict[str, bytes]) -> None:
    with MirClient(server.url, server.admin_token) as client:
        client.push(make_tree(tmp / ref.replace("/", "_").replace("@", "_"), files), ref)


def fetch(url: str, token: str, **headers: str) -> tuple[int, bytes, httpx.Headers] | httpx.TransportError:
    """The whole response body, or the transport error a cut-off body raises."""
    try:
        with httpx.stream("GET", url, headers={"Authorization": f"Bearer {token}", **headers}, timeout=60) as r:
            return r.status_code, b"".join(r.iter_raw()), r.headers
    except httpx.TransportError as exc:
        return exc


def file_url(server: LiveServer, ref: str, path: str) -> str:
    repo, version = ref.split("@")
    return f"{server.url}/v1/artifacts/{repo}/versions/{version}/files/{path}"


def refused(result: Any, code: str = "blob_corrupt") -> None:
    assert not isinstance(result, Exception), result
    status, body, _ = result
    assert status == 500 and json.loads(body)["error"]["code"] == code, (status, body[:300])


def mark(server: LiveServer, digest: str) -> tuple[Any, str | None]:
    with database(server.database_url) as engine, engine.connect() as conn:
        row = conn.execute(select(Blob.corrupt_at, Blob.corrupt_reason).where(Blob.digest == digest)).one()
    return row[0], row[1]


def corrupt_entries(server: LiveServer, digest: str) -> list[dict[str, Any]]:
    with MirClient(server.url, server.admin_token) as client:
        items = client.json("GET", "/v1/audit/entries", params={"action": "blob.corrupt", "limit": 1000})["items"]
    return [e for e in items if e["details"]["digest"] == digest]


def test_chunk_list_is_recorded_at_upload(server: LiveServer, tmp_path: Path) -> None:
    data = os.urandom(2 * MiB + 12345)
    push(server, tmp_path, "acme/chunked@1", {"w.bin": data})
    with database(server.database_url) as engine, engine.connect() as conn:
        row = conn.execute(select(BlobChunks.chunk_size, BlobChunks.hashes)
                           .where(BlobChunks.digest == digest_of(data))).one()
    assert row[0] == MiB
    assert bytes(row[1]) == b"".join(hashlib.sha256(data[i : i + MiB]).digest() for i in range(0, len(data), MiB))


def test_chunk_list_is_recorded_for_hf_uploads(server: LiveServer, tmp_path: Path) -> None:
    """Both HF write paths: a small file inline in the commit, a large one through the LFS upload URL."""
    small, large = os.urandom(3000), os.urandom(MiB + 4321)
    folder = make_tree(tmp_path / "up", {"small.bin": small, "large.bin": large})
    results = run_hf(server, tmp_path / "hf", """
        from huggingface_hub import HfApi
        attempt("upload", lambda: HfApi().upload_folder(repo_id="acme/hf-chunked", folder_path=P["folder"]).oid)
    """, folder=str(folder))
    assert results["upload"]["ok"], results
    with database(server.database_url) as engine, engine.connect() as conn:
        rows = dict(conn.execute(select(BlobChunks.digest, BlobChunks.hashes)
                                 .where(BlobChunks.digest.in_([digest_of(small), digest_of(large)]))).all())
    assert bytes(rows[digest_of(small)]) == hashlib.sha256(small).digest()
    assert bytes(rows[digest_of(large)]) == hashlib.sha256(large[:MiB]).digest() + hashlib.sha256(large[MiB:]).digest()


def test_v1_download_of_a_corrupted_blob_never_completes(server: LiveServer, tmp_path: Path) -> None:
    data, intact = os.urandom(3 * MiB + 100), os.urandom(5000)
    push(server, tmp_path, "acme/rot@1", {"w.bin": data, "intact.bin": intact})
    flip(blob_file(server.data_dir, digest_of(data)), 3 * MiB + 50)  # in the last, short chunk
    url = file_url(server, "acme/rot@1", "w.bin")
    first = fetch(url, server.admin_token)
    assert isinstance(first, httpx.TransportError), "the corrupted download completed"
    corrupt_at, reason = mark(server, digest_of(data))
    assert corrupt_at is not None and "chunk 3" in (reason or "")
    [entry] = corrupt_entries(server, digest_of(data))
    assert entry["artifact"] == "acme/rot" and entry["version"] == "1" and entry["details"]["path"] == "w.bin"
    refused(fetch(url, server.admin_token))  # marked: refused before a byte is sent, from now on
    refused(fetch(url, server.admin_token, Range="bytes=0-99"))
    status, body, headers = fetch(file_url(server, "acme/rot@1", "intact.bin"), server.admin_token)  # type: ignore[misc]
    assert status == 200 and body == intact and headers["x-mir-digest"] == digest_of(intact)
    pulled = server.cli("pull", "acme/rot@1", str(tmp_path / "dst"))
    assert pulled.returncode == 1 and "blob_corrupt" in pulled.stderr and "Traceback" not in pulled.stderr
    assert not (tmp_path / "dst" / "w.bin").exists()


def test_range_requests_check_the_chunks_they_cover(server: LiveServer, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB)
    push(server, tmp_path, "acme/ranged-rot@1", {"w.bin": data})
    flip(blob_file(server.data_dir, digest_of(data)), 2 * MiB + 10)  # chunk 2 of 0..2
    url = file_url(server, "acme/ranged-rot@1", "w.bin")
    status, body, headers = fetch(url, server.admin_token, Range="bytes=100-2000")  # type: ignore[misc]
    assert status == 206 and body == data[100:2001]
    assert headers["content-range"] == f"bytes 100-2000/{len(data)}"
    status, body, _ = fetch(url, server.admin_token, Range=f"bytes={MiB - 10}-{MiB + 10}")  # type: ignore[misc]
    assert status == 206 and body == data[MiB - 10 : MiB + 11]
    assert mark(server, digest_of(data))[0] is None  # intact chunks were checked and served; nothing marked
    past_end = fetch(url, server.admin_token, Range=f"bytes={len(data)}-")
    assert not isinstance(past_end, Exception) and past_end[0] == 416
    assert past_end[2]["content-range"] == f"bytes */{len(data)}"
    spanning = fetch(url, server.admin_token, Range=f"bytes={MiB}-")  # chunk 1 is fine, chunk 2 is not
    assert isinstance(spanning, httpx.TransportError), "a range over the corrupted chunk completed"
    assert mark(server, digest_of(data))[0] is not None
    refused(fetch(url, server.admin_token, Range=f"bytes={2 * MiB}-{2 * MiB + 99}"))
    refused(fetch(url, server.admin_token, Range="bytes=100-2000"))


def test_a_range_inside_a_corrupted_chunk_gets_a_clean_error(server: LiveServer, tmp_path: Path) -> None:
    data = os.urandom(2 * MiB)
    push(server, tmp_path, "acme/ranged-rot2@1", {"w.bin": data})
    flip(blob_file(server.data_dir, digest_of(data)), MiB + 7)
    url = file_url(server, "acme/ranged-rot2@1", "w.bin")
    refused(fetch(url, server.admin_token, Range=f"bytes={MiB}-{MiB + 99}"))  # checked before any byte is sent
    assert mark(server, digest_of(data))[0] is not None
    assert [e["details"]["detected_by"] for e in corrupt_entries(server, digest_of(data))] == ["range"]


def test_blob_without_a_chunk_list_is_served_whole_and_checked(server: LiveServer, tmp_path: Path) -> None:
    """Blobs stored before chunk lists: a Range request gets the whole checked file (200) and records the list."""
    data, rotten = os.urandom(2 * MiB + 7), os.urandom(2 * MiB + 9)
    push(server, tmp_path, "acme/legacy@1", {"w.bin": data, "r.bin": rotten})
    with database(server.database_url) as engine, engine.begin() as conn:
        conn.execute(delete(BlobChunks).where(BlobChunks.digest.in_([digest_of(data), digest_of(rotten)])))
    url = file_url(server, "acme/legacy@1", "w.bin")
    status, body, _ = fetch(url, server.admin_token, Range="bytes=10-")  # type: ignore[misc]
    assert status == 200 and body == data
    status, body, _ = fetch(url, server.admin_token, Range="bytes=10-")  # type: ignore[misc]
    assert status == 206 and body == data[10:]
    status, body, _ = fetch(url, server.admin_token, Range="bytes=-100")  # type: ignore[misc]
    assert status == 206 and body == data[-100:]
    flip(blob_file(server.data_dir, digest_of(rotten)), 3)  # first chunk: only the whole-file hash can tell
    cut = fetch(file_url(server, "acme/legacy@1", "r.bin"), server.admin_token)
    assert isinstance(cut, httpx.TransportError), "the last chunk must be held back until the digest matched"
    assert mark(server, digest_of(rotten))[0] is not None


def test_missing_blob_file_is_marked_and_refused(server: LiveServer, tmp_path: Path) -> None:
    data = os.urandom(4000)
    push(server, tmp_path, "acme/gone@1", {"w.bin": data})
    blob_file(server.data_dir, digest_of(data)).unlink()
    refused(fetch(file_url(server, "acme/gone@1", "w.bin"), server.admin_token), "blob_missing")
    corrupt_at, reason = mark(server, digest_of(data))
    assert corrupt_at is not None and "missing" in (reason or "")
    assert len(corrupt_entries(server, digest_of(data))) == 1


def test_hf_clients_never_receive_a_corrupted_file(server: LiveServer, tmp_path: Path) -> None:
    one, snap = os.urandom(3 * MiB + 1), os.urandom(3 * MiB + 2)
    push(server, tmp_path, "acme/hf-rot@1", {"weights.bin": one, "config.json": b'{"a": 1}'})
    push(server, tmp_path, "acme/hf-rot-snap@1", {"weights.bin": snap, "config.json": b'{"a": 2}'})
    for data in (one, snap):
        flip(blob_file(server.data_dir, digest_of(data)), len(data) - 1)
    home = tmp_path / "hf"
    results = run_hf(server, home, """
        from huggingface_hub import hf_hub_download, snapshot_download
        attempt("file", lambda: hf_hub_download("acme/hf-rot", "weights.bin"))
        attempt("snapshot", lambda: snapshot_download("acme/hf-rot-snap"))
    """)
    assert not results["file"]["ok"] and not results["snapshot"]["ok"], results
    assert not list(home.rglob("weights.bin")), "a corrupted file reached the HF cache"
    for data in (one, snap):
        assert not list(home.rglob(hashlib.sha256(data).hexdigest())), "a corrupted blob reached the HF cache"
        assert mark(server, digest_of(data))[0] is not None
    head = httpx.head(f"{server.url}/acme/hf-rot/resolve/main/weights.bin",
                      headers={"Authorization": f"Bearer {server.admin_token}"})
    assert head.status_code == 500 and head.headers["x-error-code"] == "BlobCorrupt"


@pytest.fixture
def ns(server: LiveServer, tmp_path: Path) -> Namespace:
    return Namespace(server, tmp_path, f"rot{tmp_path.name[-8:].replace('_', '').lower()}")


def test_verify_bundle_and_loader_refuse_a_version_holding_a_corrupt_blob(ns: Namespace, tmp_path: Path) -> None:
    src = safetensors_model(tmp_path / "m", seed=int.from_bytes(os.urandom(3), "big"))
    ref = f"{ns.name}/llm@1"
    ns.push(src, ref)
    before = ns.verify(ref, src)
    assert before.returncode == 0 and "policy: storage" in before.stdout, before.stdout + before.stderr
    assert ns.client.json("GET", f"/v1/artifacts/{ns.name}/llm/versions/1/bundle")["manifest_digest"]
    weights = src / "model-00001-of-00002.safetensors"
    flip(blob_file(ns.server.data_dir, digest_of(weights.read_bytes())), 100)
    refused(fetch(file_url(ns.server, ref, weights.name), ns.server.admin_token))  # found out, and marked
    after = ns.verify(ref, src)
    assert after.returncode == 1 and "FAIL policy: storage" in after.stdout and weights.name in after.stdout
    with pytest.raises(MirError) as exc:
        ns.client.json("GET", f"/v1/artifacts/{ns.name}/llm/versions/1/bundle")
    assert exc.value.status == 409 and exc.value.code == "blob_corrupt" and weights.name in exc.value.message
    with pytest.raises(LoaderError, match="corrupt"):
        load_verified(ref, src, "cpu", keys=[ns.pub], registry_key=ns.registry_pub, url=ns.server.url,
                      token=ns.server.admin_token)


def fsck(live: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    """``mir fsck`` on the server machine: the server's settings, no token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIR_")}
    env.update(MIR_DATA_DIR=str(live.data_dir), MIR_DATABASE_URL=live.database_url, COLUMNS="400")
    return subprocess.run([*MIR, "fsck", *args], env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def test_fsck_reports_marks_and_clears(db_url: str, tmp_path: Path) -> None:
    rotten, gone, fine = os.urandom(MiB + 500), os.urandom(1000), os.urandom(3000)
    (tmp_path / "srv").mkdir()
    with live_server(db_url, tmp_path / "srv") as live:
        push(live, tmp_path, "acme/store@1", {"a.bin": rotten, "b.bin": gone, "c.bin": fine})
        clean = fsck(live)
        assert clean.returncode == 0 and "fsck ok" in clean.stdout, clean.stdout + clean.stderr
        with database(db_url) as engine, engine.begin() as conn:
            conn.execute(delete(BlobChunks).where(BlobChunks.digest == digest_of(fine)))
        backfilled = fsck(live)
        assert backfilled.returncode == 0 and "chunk lists recorded for 1" in backfilled.stdout

        flip(blob_file(live.data_dir, digest_of(rotten)), MiB + 3)
        blob_file(live.data_dir, digest_of(gone)).unlink()
        found = fsck(live)
        assert found.returncode == 1, found.stdout + found.stderr
        assert "Traceback" not in found.stderr
        for digest, problem, path in ((digest_of(rotten), "corrupt", "a.bin"), (digest_of(gone), "missing", "b.bin")):
            line = next(ln for ln in found.stdout.splitlines() if digest in ln)
            assert problem in line and f"acme/store@1:{path}" in line and "new" in line
            assert mark(live, digest)[0] is not None
            [entry] = corrupt_entries(live, digest)
            assert entry["actor"] == "mir fsck" and entry["details"]["detected_by"] == "fsck"
        assert "chunk 1 of 2 differs" in (mark(live, digest_of(rotten))[1] or "")  # where the damage is
        assert mark(live, digest_of(fine))[0] is None
        refused(fetch(file_url(live, "acme/store@1", "a.bin"), live.admin_token))

        flip(blob_file(live.data_dir, digest_of(rotten)), MiB + 3)  # the operator restores the bytes
        again = fsck(live, "--json")
        assert again.returncode == 1
        report = json.loads(again.stdout)
        assert report["repaired"] == [digest_of(rotten)]
        assert [(f["digest"], f["problem"], f["newly_marked"]) for f in report["findings"]] == [
            (digest_of(gone), "missing", False)
        ]
        status, body, _ = fetch(file_url(live, "acme/store@1", "a.bin"), live.admin_token)  # type: ignore[misc]
        assert status == 200 and body == rotten


def test_pushing_the_bytes_again_repairs_a_corrupt_blob(server: LiveServer, tmp_path: Path) -> None:
    """A marked blob is not counted as stored: the next push sends the bytes, which replace the bad copy."""
    data = os.urandom(2 * MiB + 10)
    push(server, tmp_path, "acme/heal@1", {"w.bin": data})
    flip(blob_file(server.data_dir, digest_of(data)), 10)
    refused(fetch(file_url(server, "acme/heal@1", "w.bin"), server.admin_token))  # the first chunk fails
    assert mark(server, digest_of(data))[0] is not None
    with MirClient(server.url, server.admin_token) as client:
        from signing.manifest import FileEntry, Manifest

        opened = client.open_version("acme/heal@2", Manifest.from_entries([FileEntry("w.bin", len(data),
                                                                                    digest_of(data))]))
        assert opened["missing"] == [digest_of(data)], "a corrupt copy must not count as stored"
    push(server, tmp_path, "acme/heal@2", {"w.bin": data})
    assert mark(server, digest_of(data))[0] is None
    status, body, _ = fetch(file_url(server, "acme/heal@1", "w.bin"), server.admin_token)  # type: ignore[misc]
    assert status == 200 and body == data
    with MirClient(server.url, server.admin_token) as client:
        repaired = client.json("GET", "/v1/audit/entries", params={"action": "blob.repaired"})["items"]
    assert any(e["details"]["digest"] == digest_of(data) for e in repaired)
