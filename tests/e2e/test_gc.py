"""``mir gc`` on a real server: only what no version lists goes, and only once it is old enough."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from registry.client.http import MirClient
from registry.core.blobstore import LocalBlobStore
from signing.manifest import FileEntry, Manifest
from tests.support.server import live_server, run_gc
from tests.support.trees import make_tree


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_gc_keeps_what_versions_list_and_takes_the_rest(db_url: str, tmp_path: Path) -> None:
    shared, kept, pending, aborted, orphan = (os.urandom(2000 + i) for i in range(5))
    (tmp_path / "srv").mkdir()
    with live_server(db_url, tmp_path / "srv") as live, MirClient(live.url, live.admin_token) as client:
        client.push(make_tree(tmp_path / "kept", {"a.bin": shared, "b.bin": kept}), "acme/kept@1")
        # An open push (never committed): what it lists stays.
        (tmp_path / "c.bin").write_bytes(pending)
        client.open_version("acme/open@1", Manifest.from_entries(
            [FileEntry("a.bin", len(shared), sha(shared)), FileEntry("c.bin", len(pending), sha(pending))]))
        client.upload_blob("acme/open@1", sha(pending), tmp_path / "c.bin")
        # An aborted push: its blob is recorded, then nothing lists it.
        (tmp_path / "d.bin").write_bytes(aborted)
        client.open_version("acme/gone@1", Manifest.from_entries([FileEntry("d.bin", len(aborted), sha(aborted))]))
        client.upload_blob("acme/gone@1", sha(aborted), tmp_path / "d.bin")
        client.abort("acme/gone@1")
        # Bytes a crashed Hub commit wrote before its transaction: stored, with no row at all.
        store = LocalBlobStore.from_url(f"file://{live.data_dir / 'blobs'}")
        writer = store.writer(sha(orphan), len(orphan))
        writer.write(orphan)
        writer.commit()

        young = run_gc(live, "--min-age", "1h")
        assert young["collected"] == [] and young["kept_young"] == 2
        dry = run_gc(live, "--min-age", "0", "--dry-run")
        assert {(c["digest"], c["reason"]) for c in dry["collected"]} == {
            (sha(aborted), "unreferenced"), (sha(orphan), "orphan file")}
        assert store.exists(sha(aborted)) and store.exists(sha(orphan))

        done = run_gc(live, "--min-age", "0")
        assert {c["digest"] for c in done["collected"]} == {sha(aborted), sha(orphan)}
        assert done["bytes_freed"] == len(aborted) + len(orphan)
        assert not store.exists(sha(aborted)) and not store.exists(sha(orphan))
        for data in (shared, kept, pending):
            assert store.exists(sha(data), len(data))
        assert run_gc(live, "--min-age", "0")["collected"] == []  # nothing left to take

        # Everything that was listed still works: pull and verify, finish the open push, push the aborted one.
        pulled = live.cli("pull", "acme/kept@1", str(tmp_path / "out"))
        assert pulled.returncode == 0, pulled.stderr
        assert (tmp_path / "out" / "b.bin").read_bytes() == kept
        assert client.commit("acme/open@1")["state"] == "committed"
        client.push(make_tree(tmp_path / "again", {"d.bin": aborted}), "acme/gone@2")  # the bytes are sent again
        assert store.exists(sha(aborted), len(aborted))
        entries = client.json("GET", "/v1/audit/entries", params={"action": "blobs.collected"})["items"]
        assert [e["details"]["count"] for e in entries] == [2]
        audit = live.cli("audit", "verify")
        assert audit.returncode == 0, audit.stdout + audit.stderr
