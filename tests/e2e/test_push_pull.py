"""Push and pull through the real server with the real CLI and Python client."""

from __future__ import annotations

import filecmp
from pathlib import Path

import httpx
import pytest

from registry.client.http import MirClient, MirError
from tests.support.server import LiveServer
from tests.support.trees import make_tree, model_dir


def same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a)


def test_cli_push_pull_round_trip(server: LiveServer, tmp_path: Path) -> None:
    src = model_dir(tmp_path / "src")
    pushed = server.cli("push", str(src), "acme/bert@1.0.0", check=True)
    assert "committed acme/bert@1.0.0" in pushed.stdout
    out = server.cli("pull", "acme/bert@1.0.0", str(tmp_path / "dst"), check=True)
    assert "4 files verified" in out.stdout
    assert same_tree(src, tmp_path / "dst")
    shown = server.cli("show", "acme/bert@1.0.0", check=True).stdout
    assert "model.safetensors" in shown and "latest" in shown
    listed = server.cli("ls", "acme", check=True).stdout
    assert "acme/bert" in listed


def test_dedup_across_versions_and_latest_alias(server: LiveServer, tmp_path: Path) -> None:
    src = model_dir(tmp_path / "src")
    with MirClient(server.url, server.admin_token) as client:
        first = client.push(src, "acme/dedup@1")
        assert first["uploaded_blobs"] + first["reused_blobs"] == 4  # empty.txt may already be stored
        (src / "config.json").write_text('{"hidden_size": 1}')
        second = client.push(src, "acme/dedup@2")
        assert second["uploaded_blobs"] == 1 and second["reused_blobs"] == 3
        assert client.show_version("acme/dedup")["version"] == "2"
        assert client.show_version("acme/dedup@latest")["version"] == "2"
        assert client.show_version("acme/dedup@1")["manifest_digest"] == first["manifest_digest"]


def test_dataset_kind_and_kind_conflict(server: LiveServer, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "d", {"train.jsonl": b'{"text": "hi"}\n'})
    assert server.cli("push", str(src), "acme/corpus@1", "--kind", "dataset").returncode == 0
    result = server.cli("push", str(src), "acme/corpus@2", "--kind", "model")
    assert result.returncode == 1 and "kind_mismatch" in result.stderr


def test_versions_are_immutable(server: LiveServer, tmp_path: Path) -> None:
    src = model_dir(tmp_path / "src")
    with MirClient(server.url, server.admin_token) as client:
        before = client.push(src, "acme/immutable@1.0")
        (src / "config.json").write_text("changed")
        with pytest.raises(MirError) as exc:
            client.push(src, "acme/immutable@1.0")
        assert exc.value.code == "version_exists" and exc.value.status == 409
        with pytest.raises(MirError) as exc:
            client.abort("acme/immutable@1.0")
        assert exc.value.code == "version_exists"
        assert client.show_version("acme/immutable@1.0")["manifest_digest"] == before["manifest_digest"]
    assert server.cli("pull", "acme/immutable@1.0", str(tmp_path / "out")).returncode == 0


def test_aliases_move_and_are_recorded(server: LiveServer, tmp_path: Path) -> None:
    src = model_dir(tmp_path / "src")
    with MirClient(server.url, server.admin_token) as client:
        client.push(src, "acme/aliased@1")
        (src / "config.json").write_text("v2")
        client.push(src, "acme/aliased@2")
    assert server.cli("alias", "set", "acme/aliased@1", "prod", "--reason", "first deploy").returncode == 0
    assert server.cli("alias", "set", "acme/aliased@2", "prod").returncode == 0
    pulled = server.cli("pull", "acme/aliased@prod", str(tmp_path / "p"), check=True)
    assert "acme/aliased@2" in pulled.stdout
    with MirClient(server.url, server.admin_token) as client:
        history = client.alias_history("acme/aliased", "prod")
        assert [(h["from"], h["to"]) for h in history] == [(None, "1"), ("1", "2")]
        assert history[0]["reason"] == "first deploy"
        latest = client.alias_history("acme/aliased", "latest")
        assert [(h["from"], h["to"]) for h in latest] == [(None, "1"), ("1", "2")]
        with pytest.raises(MirError) as exc:
            client.set_alias("acme/aliased", "prod", "3")
        assert exc.value.code == "version_not_found"
        with pytest.raises(MirError) as exc:
            client.set_alias("acme/aliased", "1", "2")
        assert exc.value.code == "invalid_name"
    assert server.cli("alias", "rm", "acme/aliased", "prod").returncode == 0
    assert server.cli("pull", "acme/aliased@prod", str(tmp_path / "q")).returncode == 1


def test_pull_refuses_content_that_does_not_match_manifest(server: LiveServer, tmp_path: Path) -> None:
    """Corrupt a stored blob on disk: the server refuses to serve it, and the client writes nothing."""
    src = make_tree(tmp_path / "src", {"w.bin": b"original weights" * 1000})
    with MirClient(server.url, server.admin_token) as client:
        result = client.push(src, "acme/corrupt@1")
        digest = result["files"][0]["digest"]
        blob = server.data_dir / "blobs" / "sha256" / digest[7:9] / digest[9:11] / digest[7:]
        data = bytearray(blob.read_bytes())
        data[5] ^= 0xFF
        blob.write_bytes(bytes(data))
        with pytest.raises(MirError) as exc:
            client.pull("acme/corrupt@1", tmp_path / "dst")
        assert exc.value.code == "blob_corrupt" and exc.value.status == 500
    assert not (tmp_path / "dst" / "w.bin").exists()
    assert not list((tmp_path / "dst").glob(".*mir-part"))
    blob.write_bytes(bytes(data[:5]) + bytes([data[5] ^ 0xFF]) + bytes(data[6:]))


def test_pull_resumes_and_skips_verified_files(server: LiveServer, tmp_path: Path) -> None:
    src = model_dir(tmp_path / "src")
    with MirClient(server.url, server.admin_token) as client:
        client.push(src, "acme/resume-pull@1")
        dst = tmp_path / "dst"
        first = client.pull("acme/resume-pull@1", dst)
        assert first["downloaded_files"] == 4
        (dst / "config.json").write_text("tampered locally")
        second = client.pull("acme/resume-pull@1", dst)
        assert second["downloaded_files"] == 1
    assert same_tree(src, dst)


def test_range_requests_for_resumed_downloads(server: LiveServer, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"f.bin": bytes(range(256)) * 40})
    with MirClient(server.url, server.admin_token) as client:
        client.push(src, "acme/ranged@1")
    response = httpx.get(
        f"{server.url}/v1/artifacts/acme/ranged/versions/1/files/f.bin",
        headers={"Authorization": f"Bearer {server.admin_token}", "Range": "bytes=100-"},
    )
    assert response.status_code == 206
    assert response.content == (bytes(range(256)) * 40)[100:]
