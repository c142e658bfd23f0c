"""A full disk and a killed server: clear answers, nothing half-stored, nothing left behind.

The full disk is real: a small tmpfs mounted for the test (root only) holds the blob store, the SQLite
database, or a PostgreSQL tablespace.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import create_engine, text

from registry.client.http import MirClient
from registry.core.blobstore import HOST_TAG, LocalBlobStore
from signing.hashing import hash_directory
from tests.e2e.test_crash_and_memory import SLOW_UPLOAD, _write_random
from tests.support.databases import BACKENDS, database_url, postgres_base_url
from tests.support.server import LiveServer, live_server
from tests.support.trees import make_tree

MiB = 1 << 20


@contextmanager
def small_filesystem(where: Path, size: str, *options: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``where`` (writes past it fail with ENOSPC), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    created = not where.exists()
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(where)],
                   check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        if created:
            with suppress(OSError):
                where.rmdir()


def fill(directory: Path) -> Path:
    """Write a filler file until the filesystem is full; returns it (delete it to free the space)."""
    filler = directory / "filler"
    with open(filler, "wb") as fh:
        block = b"\0" * 65536
        while True:
            try:
                fh.write(block)
                fh.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    with suppress(OSError), open(filler, "ab") as fh:  # the last partial block
        while True:
            fh.write(b"\0" * 512)
            fh.flush()
    return filler


def assert_full(response: httpx.Response) -> None:
    assert response.status_code == 507, response.text
    error = response.json()["error"]
    assert error["code"] == "insufficient_storage" and "storage is full" in error["message"]


def _auth(server: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_token}"}


def _open(server: LiveServer, repo: str, files: dict[str, bytes]) -> httpx.Response:
    manifest = [{"path": p, "size": len(d), "digest": "sha256:" + hashlib.sha256(d).hexdigest()}
                for p, d in files.items()]
    return httpx.post(f"{server.url}/v1/artifacts/{repo}/versions", headers=_auth(server),
                      json={"version": "1", "manifest": {"files": manifest}})


@pytest.mark.parametrize("backend", BACKENDS)
def test_full_blob_store_is_507_and_nothing_is_half_stored(backend: str, tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "small", "3m") as small, database_url(backend, tmp_path) as url, \
            live_server(url, tmp_path, env={"MIR_BLOB_STORE": f"file://{small}/blobs"}) as server:
        with MirClient(server.url, server.admin_token) as client:
            client.push(make_tree(tmp_path / "first", {"a.txt": b"kept"}), "full/before@1")
        src = tmp_path / "big"
        _write_random(src / "w.bin", 4 * MiB)
        manifest = hash_directory(src)
        entry = manifest.files[0]
        with MirClient(server.url, server.admin_token) as client:
            opened = client.open_version("full/big@1", manifest)
            assert opened["missing"] == [entry.digest]
        with open(src / "w.bin", "rb") as fh:
            response = httpx.put(f"{server.url}/v1/artifacts/full/big/versions/1/blobs/{entry.digest}",
                                 content=fh.read(), headers=_auth(server), timeout=60)
        assert_full(response)
        assert not list((small / "blobs" / "tmp").glob("*.part")), "the temp file of a failed write is removed"
        assert not (small / "blobs" / "sha256" / entry.digest[7:9]).exists()
        commit = httpx.post(f"{server.url}/v1/artifacts/full/big/versions/1/commit", headers=_auth(server))
        assert commit.status_code == 409 and commit.json()["error"]["code"] == "blobs_missing"

        # An HF inline commit that does not fit either: 507 in the HF shape, no version.
        body = (b'{"key": "header", "value": {"summary": "s"}}\n{"key": "file", "value": {"path": "x.bin", '
                b'"encoding": "base64", "content": "' + base64.b64encode(os.urandom(4 * MiB)) + b'"}}')
        hf = httpx.post(f"{server.url}/api/models/full/hf/commit/main", content=body, headers=_auth(server),
                        timeout=60)
        assert hf.status_code == 507 and hf.headers["x-error-code"] == "InsufficientStorage", hf.text
        assert not list((small / "blobs" / "tmp").glob("*.part"))

        with MirClient(server.url, server.admin_token) as client:
            client.pull("full/before@1", tmp_path / "out")
        assert (tmp_path / "out" / "a.txt").read_bytes() == b"kept"
        assert "Traceback" not in server.log()


def test_full_sqlite_database_is_507_and_rolls_back(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "small", "8m") as small, \
            live_server(f"sqlite:///{small}/mir.db", tmp_path) as server:
        with MirClient(server.url, server.admin_token) as client:
            client.push(make_tree(tmp_path / "first", {"a.txt": b"kept"}), "fulldb/before@1")
        filler = fill(small)
        files = {f"shard-{i:05d}.bin": str(i).encode() for i in range(3000)}
        assert_full(_open(server, "fulldb/many", files))
        filler.unlink()
        missing = httpx.get(f"{server.url}/v1/artifacts/fulldb/many", headers=_auth(server))
        assert missing.status_code == 404, "the failed transaction left nothing behind"
        assert _open(server, "fulldb/many", files).status_code == 201, "works again once space is freed"
        with MirClient(server.url, server.admin_token) as client:
            assert client.show_version("fulldb/before@1")["files"][0]["path"] == "a.txt"


def test_full_postgresql_tablespace_is_507_and_rolls_back(tmp_path: Path) -> None:
    base = postgres_base_url()
    owner = subprocess.run(["id", "-u", "postgres"], capture_output=True, text=True)
    if owner.returncode != 0:
        pytest.skip("PostgreSQL runs as another machine's user; its disk cannot be filled from here")
    uid = owner.stdout.strip()
    gid = subprocess.run(["id", "-g", "postgres"], capture_output=True, text=True, check=True).stdout.strip()
    space = f"mir_full_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    where = Path(tempfile.gettempdir()) / f"mir-pgspace-{uuid.uuid4().hex[:8]}"  # postgres must reach it
    with small_filesystem(where, "12m", f"uid={uid}", f"gid={gid}", "mode=0700") as small:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE TABLESPACE {space} LOCATION '{small}'"))
        try:
            with database_url("postgresql", tmp_path) as url:
                url_in_space = url.replace("options=", "options=" + quote(f"-cdefault_tablespace={space} "), 1)
                with live_server(url_in_space, tmp_path) as server:
                    with MirClient(server.url, server.admin_token) as client:
                        client.push(make_tree(tmp_path / "first", {"a.txt": b"kept"}), "fullpg/before@1")
                    filler = fill(small)
                    files = {f"shard-{i:05d}.bin": str(i).encode() for i in range(3000)}
                    assert_full(_open(server, "fullpg/many", files))
                    filler.unlink()
                    missing = httpx.get(f"{server.url}/v1/artifacts/fullpg/many", headers=_auth(server))
                    assert missing.status_code == 404
                    assert _open(server, "fullpg/many", files).status_code == 201
        finally:
            with admin.connect() as conn:
                conn.execute(text(f"DROP TABLESPACE IF EXISTS {space}"))
            admin.dispose()


# -- temp files of dead uploads --------------------------------------------------------------------


def test_restart_sweeps_the_temp_file_of_a_killed_server(tmp_path: Path) -> None:
    """The upload's temp file names its writer; once that process is gone, the next start removes it at once."""
    src = make_tree(tmp_path / "src", {"config.json": b"{}"})
    _write_random(src / "weights.bin", 16 * MiB)
    with database_url("sqlite", tmp_path) as url:
        with live_server(url, tmp_path) as server:
            proc = subprocess.Popen(
                [sys.executable, "-c", SLOW_UPLOAD, server.url, server.admin_token, str(src), "acme/sweep@1"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            assert proc.stdout is not None and proc.stdout.readline().strip() == "half-sent"
            parts = server.data_dir / "blobs" / "tmp"
            deadline = time.monotonic() + 10
            while not list(parts.glob("*.part")) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert list(parts.glob("*.part"))
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
            proc.kill()
            proc.wait()
            assert list(parts.glob("*.part")), "a SIGKILLed server cannot clean up after itself"
        with live_server(url, tmp_path) as server:
            assert not list((server.data_dir / "blobs" / "tmp").glob("*.part"))


def test_sweep_keeps_what_a_live_writer_or_another_replica_may_own(tmp_path: Path) -> None:
    """Replicas share the store: only files of dead local processes, or untouched for the stale age, go."""
    store = LocalBlobStore(tmp_path / "blobs")
    store.tmp_dir.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    hexd = "ab" * 32
    names = {
        "dead": f"{hexd}.{HOST_TAG}.{dead.pid}.1.part",
        "live": f"{hexd}.{HOST_TAG}.{os.getppid()}.2.part",
        "other_host": f"{hexd}.other-replica.{dead.pid}.3.part",
        "other_host_stale": f"{hexd}.other-replica.{dead.pid}.4.part",
    }
    for name in names.values():
        (store.tmp_dir / name).write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(store.tmp_dir / names["other_host_stale"], (two_hours_ago, two_hours_ago))
    assert store.sweep_temp(older_than_s=3600) == 2
    assert sorted(p.name for p in store.tmp_dir.iterdir()) == sorted([names["live"], names["other_host"]])
