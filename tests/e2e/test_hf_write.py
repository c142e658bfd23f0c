"""The real ``HfApi`` pushing to the registry (``HF_HUB_DISABLE_XET=1``), and the LFS protocol's edge cases."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from registry.client.http import MirClient
from registry.hf.ids import commit_id
from tests.e2e.test_hf_read import failed, ok, run_hf, tree_digests
from tests.support.server import LiveServer
from tests.support.trees import make_tree

HUB_036 = Path(sys.prefix) / "hub-0.36"  # `make` installs huggingface_hub 0.36 here, beside the current one


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A model folder with a README (metadata check), an empty file, a nested file and an LFS-sized file."""
    return make_tree(
        tmp_path / "up",
        {
            "README.md": b"---\nlicense: mit\n---\n# tiny\n",
            "config.json": b'{"hidden_size": 8}',
            "empty.txt": b"",
            "sub/a.txt": b"aaa",
            "weights.bin": os.urandom(1_500_000),  # above the 1 MiB inline limit: goes through LFS
        },
    )


def test_upload_folder_and_create_commit_make_versions(server: LiveServer, folder: Path, tmp_path: Path) -> None:
    with MirClient(server.url, server.admin_token) as client:
        reader = client.create_token("hf-reader", ["read:acme"])["token"]
    results = run_hf(
        server,
        tmp_path / "hf",
        """
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
        api = HfApi()
        attempt("create", lambda: str(api.create_repo("acme/pushed", exist_ok=True)))
        attempt("create_again", lambda: str(api.create_repo("acme/pushed", exist_ok=True)))
        attempt("first", lambda: api.upload_folder(repo_id="acme/pushed", folder_path=P["folder"]).oid)
        attempt("same_again", lambda: api.upload_folder(repo_id="acme/pushed", folder_path=P["folder"]).oid)
        attempt("edit", lambda: api.create_commit(
            "acme/pushed", [CommitOperationDelete("sub/a.txt"), CommitOperationAdd("notes.txt", b"new")],
            commit_message="drop a.txt", commit_description="and add notes").oid)
        attempt("named", lambda: api.upload_folder(repo_id="acme/pushed", folder_path=P["folder"], revision="2.0").oid)
        attempt("named_again", lambda: api.upload_folder(
            repo_id="acme/pushed", folder_path=P["folder"], revision="2.0", commit_message="x").oid)
        attempt("delete_missing", lambda: api.create_commit(
            "acme/pushed", [CommitOperationDelete("nope.txt")], commit_message="rm"))
        attempt("stale_parent", lambda: api.create_commit(
            "acme/pushed", [CommitOperationAdd("x.txt", b"x")], commit_message="x", parent_commit="0" * 40))
        attempt("pull_request", lambda: api.create_commit(
            "acme/pushed", [CommitOperationAdd("x.txt", b"x")], commit_message="x", create_pr=True))
        attempt("read_only", lambda: api.upload_folder(repo_id="acme/pushed", folder_path=P["folder"],
                                                       token=P["reader"]))
        attempt("dataset", lambda: api.upload_folder(repo_id="acme/pushed-data", folder_path=P["folder"],
                                                     repo_type="dataset", allow_patterns=["*.txt"]).oid)
        """,
        folder=str(folder),
        reader=reader,
    )
    assert ok(results, "create") == f"{server.url}/acme/pushed" == ok(results, "create_again")
    first = ok(results, "first")
    assert ok(results, "same_again") == first  # nothing changed: no new commit, no new version
    edit, named = ok(results, "edit"), ok(results, "named")
    assert "A file with this name doesn't exist" in failed(results, "delete_missing", "RemoteEntryNotFoundError")[
        "message"
    ]
    assert failed(results, "stale_parent", "HfHubHTTPError")["status"] == 412
    assert "pull requests are not supported" in failed(results, "pull_request", "BadRequestError")["message"]
    assert failed(results, "named_again", "HfHubHTTPError")["status"] == 409
    denied = failed(results, "read_only", "HfHubHTTPError")
    assert denied["status"] == 403 and "may not write" in denied["message"]

    with MirClient(server.url, server.admin_token) as client:
        versions = client.show_artifact("acme/pushed")["versions"]
        assert [v["version"] == "2.0" for v in versions] == [False, False, True]
        auto1, auto2 = versions[0], versions[1]
        assert auto1["version"].startswith("hf-") and auto2["version"].startswith("hf-")
        assert commit_id("acme/pushed", auto1["version"], auto1["manifest_digest"]) == first
        assert commit_id("acme/pushed", auto2["version"], auto2["manifest_digest"]) == edit
        assert commit_id("acme/pushed", "2.0", versions[2]["manifest_digest"]) == named
        assert auto2["description"] == "drop a.txt\n\nand add notes"
        edges = client.show_version(f"acme/pushed@{auto2['version']}")["lineage"]
        assert [(e["type"], e["parent"], e["origin"]) for e in edges] == [
            ("derived_from", f"acme/pushed@{auto1['version']}", "recorded")
        ]
        assert edges[0]["attributes"] == {"via": "hf_commit", "parent_commit": first}
        latest = client.show_version("acme/pushed@latest")
        assert latest["version"] == "2.0" and latest["scan_status"] is not None  # queued for scanning like a push
        params = {"artifact": "acme/pushed", "action": "version.committed"}
        committed = client.json("GET", "/v1/audit/entries", params=params)["items"]
        assert [(e["version"], e["actor"]) for e in committed] == [(v["version"], "admin") for v in versions]
        data = client.show_artifact("acme/pushed-data")
        assert data["kind"] == "dataset" and len(data["versions"]) == 1

    # What HF pushed, mir pulls and verifies byte for byte.
    server.cli("pull", f"acme/pushed@{auto1['version']}", str(tmp_path / "p1"), check=True)
    assert tree_digests(tmp_path / "p1") == tree_digests(folder)
    server.cli("pull", f"acme/pushed@{auto2['version']}", str(tmp_path / "p2"), check=True)
    expected = {k: v for k, v in tree_digests(folder).items() if k != "sub/a.txt"}
    assert tree_digests(tmp_path / "p2") == {**expected, "notes.txt": hashlib.sha256(b"new").hexdigest()}


def _batch(server: LiveServer, token: str, objects: list[dict[str, object]], repo: str = "acme/lfs") -> httpx.Response:
    return httpx.post(
        f"{server.url}/{repo}.git/info/lfs/objects/batch",
        headers={**_auth(token), "Content-Type": "application/vnd.git-lfs+json"},
        json={"operation": "upload", "transfers": ["basic"], "objects": objects, "hash_algo": "sha256"},
    )


def _commit(server: LiveServer, token: str, lines: list[dict[str, object]], repo: str = "acme/lfs") -> httpx.Response:
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    return httpx.post(
        f"{server.url}/api/models/{repo}/commit/main",
        headers={**_auth(token), "Content-Type": "application/x-ndjson"},
        content=body,
    )


def test_lfs_uploads_are_checked_and_urls_self_authorizing(server: LiveServer, tmp_path: Path) -> None:
    token = server.admin_token
    content = os.urandom(200_000)
    oid, size = hashlib.sha256(content).hexdigest(), len(content)
    answer = _batch(server, token, [{"oid": oid, "size": size}, {"oid": "XYZ", "size": 1}])
    assert answer.status_code == 200 and answer.json()["transfer"] == "basic"
    good, bad = answer.json()["objects"]
    assert bad["error"]["code"] == 422
    href = good["actions"]["upload"]["href"]
    verify = good["actions"]["verify"]["href"]

    # Content that does not hash to the oid is refused and nothing is stored.
    wrong = httpx.put(href, content=os.urandom(size))
    assert wrong.status_code == 400 and wrong.headers["x-error-code"] == "DigestMismatch"
    assert httpx.post(verify, headers=_auth(token), json={"oid": oid, "size": size}).status_code == 404

    # Any change to the signed URL is refused before a byte is written.
    scheme, netloc, path, query, _ = urlsplit(href)
    params = dict(parse_qsl(query))
    changes = (("sig", "0" * 64), ("size", str(size + 1)), ("ns", "other"), ("exp", str(int(params["exp"]) + 1)))
    for key, value in changes:
        tampered = f"{scheme}://{netloc}{path}?{urlencode({**params, key: value})}"
        refused = httpx.put(tampered, content=content)
        assert refused.status_code == 403 and refused.headers["x-error-code"] == "InvalidUploadUrl", key
    other_oid = hashlib.sha256(b"other").hexdigest()
    swapped = httpx.put(f"{scheme}://{netloc}/api/mir-lfs/{other_oid}?{query}", content=b"other")
    assert swapped.status_code == 403
    assert httpx.put(f"{scheme}://{netloc}{path}", content=content).status_code == 403

    # The genuine URL works without any Authorization header, then the object is known: no actions next time.
    assert httpx.put(href, content=content).status_code == 200
    assert httpx.post(verify, headers=_auth(token), json={"oid": oid, "size": size}).status_code == 200
    again = _batch(server, token, [{"oid": oid, "size": size}]).json()["objects"][0]
    assert "actions" not in again

    # A commit naming an LFS object that was never uploaded is refused; one with the stored object is accepted.
    never = hashlib.sha256(b"never uploaded").hexdigest()
    header = {"key": "header", "value": {"summary": "s"}}
    missing = _commit(server, token, [header, {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256",
                                                                          "oid": never, "size": 14}}])
    assert missing.status_code == 409 and never in missing.headers["x-error-message"]
    copied = _commit(server, token, [header, {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256",
                                                                         "oid": never}}])
    assert copied.status_code == 404 and copied.headers["x-error-code"] == "EntryNotFound"
    inline = {"key": "file", "value": {"path": "a.txt", "content": base64.b64encode(b"a").decode(),
                                       "encoding": "base64"}}
    done = _commit(server, token, [header, inline, {"key": "lfsFile", "value": {"path": "w.bin", "algo": "sha256",
                                                                                "oid": oid, "size": size}}])
    assert done.status_code == 200 and len(done.json()["commitOid"]) == 40
    with MirClient(server.url, token) as client:
        files = {f["path"]: f["digest"] for f in client.show_version("acme/lfs")["files"]}
    assert files == {"a.txt": "sha256:" + hashlib.sha256(b"a").hexdigest(), "w.bin": f"sha256:{oid}"}


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        ([b"not json"], "not JSON"),
        ([b'{"key": "file", "value": {"path": "a", "content": "eA=="}}'], "no header"),
        ([b'{"key": "header", "value": {}}', b'{"key": "file", "value": {"path": "../x", "content": ""}}'], ".."),
        ([b'{"key": "header", "value": {}}', b'{"key": "file", "value": {"path": "a", "content": "!!"}}'], "base64"),
        ([b'{"key": "header", "value": {}}', b'{"key": "rename", "value": {"path": "a"}}'], "unknown operation"),
        ([b'{"key": "header", "value": {}}', b'{"key": "file", "value": {"path": "a/b", "content": ""}}',
          b'{"key": "file", "value": {"path": "a", "content": ""}}'], "invalid file list"),
    ],
)
def test_malformed_commits_are_refused_clearly(server: LiveServer, lines: list[bytes], needle: str) -> None:
    response = httpx.post(
        f"{server.url}/api/models/acme/bad-commit/commit/main",
        headers={**_auth(server.admin_token), "Content-Type": "application/x-ndjson"},
        content=b"\n".join(lines),
    )
    assert response.status_code == 400 and response.headers["x-error-code"] == "BadRequest"
    assert needle in response.json()["error"]


def test_write_endpoints_require_a_write_token(server: LiveServer) -> None:
    oid = hashlib.sha256(b"x").hexdigest()
    anonymous = httpx.post(f"{server.url}/acme/lfs2.git/info/lfs/objects/batch", json={"operation": "upload"})
    assert anonymous.status_code == 401 and anonymous.headers["x-error-code"] == "RepoNotFound"
    with MirClient(server.url, server.admin_token) as client:
        reader = client.create_token("lfs-reader", ["read:acme"])["token"]
    assert _batch(server, reader, [{"oid": oid, "size": 1}], repo="acme/lfs2").status_code == 403
    assert _commit(server, reader, [{"key": "header", "value": {}}], repo="acme/lfs2").status_code == 403
    bad = httpx.post(f"{server.url}/api/repos/create", headers=_auth("mir_wrong"), json={"name": "x"})
    assert bad.status_code == 401 and bad.headers["x-error-message"] == "Invalid credentials in Authorization header"


@pytest.mark.parametrize("hub", ["current", "0.36"])
def test_large_upload_without_disabling_xet(server: LiveServer, tmp_path: Path, hub: str) -> None:
    """No HF_HUB_DISABLE_XET: hub 0.36 falls back to LFS by itself (the batch answer offers only ``basic``);
    hub 1.x and later have no fallback, so the error they show must name the fix."""
    assert (HUB_036 / "huggingface_hub").is_dir(), "make installs huggingface_hub 0.36 into the venv"
    big = make_tree(tmp_path / "big", {"model.bin": os.urandom(10 << 20)})
    changes: dict[str, str | None] = {"HF_HUB_DISABLE_XET": None}
    if hub == "0.36":
        changes["PYTHONPATH"] = str(HUB_036)
    results = run_hf(
        server,
        tmp_path / "hf",
        """
        import huggingface_hub
        from huggingface_hub import HfApi
        api = HfApi()
        attempt("version", lambda: huggingface_hub.__version__)
        api.create_repo(P["repo"], exist_ok=True)
        attempt("upload", lambda: api.upload_folder(repo_id=P["repo"], folder_path=P["folder"]).oid)
        """,
        env_changes=changes,
        repo=f"acme/xet-{hub.replace('.', '')}",
        folder=str(big),
    )
    version = ok(results, "version")
    if hub == "0.36":
        assert version.startswith("0.36."), version
        ok(results, "upload")
        with MirClient(server.url, server.admin_token) as client:
            shown = client.show_version("acme/xet-036@latest")
        assert [(f["path"], f["digest"]) for f in shown["files"]] == [
            ("model.bin", "sha256:" + tree_digests(big)["model.bin"])]
    else:
        assert not version.startswith("0."), version
        outcome = results["upload"]
        assert not outcome["ok"], outcome
        assert "HF_HUB_DISABLE_XET=1" in outcome["message"], outcome
        with MirClient(server.url, server.admin_token) as client:
            assert client.show_artifact("acme/xet-current")["versions"] == []  # nothing half-committed
