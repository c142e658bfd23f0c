"""``mir import hf``: snapshots from a real HF cache (filled by the real client from our own registry)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from registry.client.hf_import import HfImportError, load_snapshot
from registry.client.http import MirClient
from tests.e2e.test_hf_read import ok, run_hf, tree_digests, version_commit
from tests.support.server import LiveServer
from tests.support.trees import model_dir


@pytest.fixture(scope="module")
def cached(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """acme/src@1 pushed with mir, then downloaded by ``snapshot_download`` into a cache and a local_dir."""
    root = tmp_path_factory.mktemp("import")
    src = model_dir(root / "src")
    with MirClient(server.url, server.admin_token) as client:
        client.push(src, "acme/src@1")
    results = run_hf(
        server,
        root / "hf",
        """
        from huggingface_hub import snapshot_download
        attempt("cache", lambda: snapshot_download("acme/src"))
        attempt("local", lambda: snapshot_download("acme/src", local_dir=P["local"]))
        """,
        local=str(root / "local"),
    )
    return {
        "src": src,
        "hub": root / "hf" / "hub",
        "snapshot": Path(ok(results, "cache")),
        "local": Path(ok(results, "local")),
        "commit": version_commit(server, "acme/src@1"),
    }


def _imported(server: LiveServer, reference: str) -> tuple[dict[str, str], list[dict[str, object]]]:
    with MirClient(server.url, server.admin_token) as client:
        shown = client.show_version(reference)
    return {f["path"]: f["digest"].removeprefix("sha256:") for f in shown["files"]}, shown["lineage"]


def test_import_from_cache_by_repo_id_folder_and_local_dir(
    server: LiveServer, cached: dict[str, Path | str], tmp_path: Path
) -> None:
    src, hub, commit = Path(cached["src"]), Path(cached["hub"]), str(cached["commit"])
    snapshot, local = Path(cached["snapshot"]), Path(cached["local"])
    hf_home = {"HF_HOME": str(hub.parent)}
    by_id = server.cli("import", "hf", "acme/src", "acme/imported@1", check=True, **hf_home)
    assert f"imported hf:acme/src@{commit} as acme/imported@1" in by_id.stdout
    assert "checked against the cache's files and tree listing" in by_id.stdout
    server.cli("import", "hf", str(local), "acme/imported@2", "--repo-id", "acme/src", check=True)
    # The other two spellings of a cache entry, through the same functions the command uses.
    with MirClient(server.url, server.admin_token) as client:
        for n, (where, revision) in enumerate([(snapshot, None), (snapshot.parent.parent, "main")], start=3):
            found = load_snapshot(str(where), revision=revision)
            client.push(found.root, f"acme/imported@{n}", manifest=found.manifest(), lineage=[found.lineage()])
    expected = tree_digests(src)
    for n in range(1, 5):
        files, lineage = _imported(server, f"acme/imported@{n}")
        assert files == expected, n
        assert [(e["type"], e["parent"], e["origin"]) for e in lineage] == [
            ("imported_from", f"hf://acme/src@{commit}", "declared")
        ], n
        assert lineage[0]["attributes"]["source"] == ("hf-local-dir" if n == 2 else "hf-cache")
        assert lineage[0]["attributes"]["files_checked"] == len(expected)
    with pytest.raises(HfImportError, match="pass --repo-id"):
        load_snapshot(str(local))


def _copy_cache(hub: Path, tmp_path: Path) -> tuple[Path, Path]:
    copy = tmp_path / "hub"
    shutil.copytree(hub, copy, symlinks=True)
    repo = copy / "models--acme--src"
    return copy, next((repo / "snapshots").iterdir())


def test_tampered_cache_blob_is_refused(server: LiveServer, cached: dict[str, Path | str], tmp_path: Path) -> None:
    hub, snapshot = _copy_cache(Path(cached["hub"]), tmp_path)
    blob = (snapshot / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF  # same size, different content: only hashing can tell
    blob.write_bytes(bytes(data))
    result = server.cli("import", "hf", "acme/src", "acme/tampered@1", "--cache-dir", str(hub))
    assert result.returncode == 1
    assert "refusing to import: model.safetensors does not match the cache's record" in result.stderr
    assert "tampered" in result.stderr
    with MirClient(server.url, server.admin_token) as client:
        assert "acme/tampered" not in {a["artifact"] for a in client.list_artifacts("acme")}


def test_partial_and_escaping_snapshots(server: LiveServer, cached: dict[str, Path | str], tmp_path: Path) -> None:
    hub, snapshot = _copy_cache(Path(cached["hub"]), tmp_path)
    (snapshot / "tokenizer" / "vocab.txt").unlink()
    with pytest.raises(HfImportError, match=r"partial snapshot: 1 file\(s\) .* \(tokenizer/vocab.txt\)"):
        load_snapshot(str(snapshot))
    allowed = server.cli("import", "hf", str(snapshot), "acme/partial@1", "--allow-partial", check=True)
    assert "partial" in allowed.stdout
    files, lineage = _imported(server, "acme/partial@1")
    assert "tokenizer/vocab.txt" not in files and lineage[0]["attributes"]["partial"] is True

    outside = tmp_path / "secret.txt"
    outside.write_text("not part of any model")
    (snapshot / "config.json").unlink()
    os.symlink(outside, snapshot / "config.json")
    with pytest.raises(HfImportError, match=r"config\.json points outside the HF cache"):
        load_snapshot(str(snapshot), allow_partial=True)
    with pytest.raises(HfImportError, match="neither an HF cache entry nor a local_dir download"):
        load_snapshot(str(cached["src"]))
    with pytest.raises(HfImportError, match="is not in the Hugging Face cache"):
        load_snapshot("acme/never-downloaded", cache_dir=hub)
    with pytest.raises(HfImportError, match="revision 'v9' is not in the cache"):
        load_snapshot("acme/src", cache_dir=Path(cached["hub"]), revision="v9")
