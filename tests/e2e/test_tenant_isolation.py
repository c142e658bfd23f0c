"""Deduplicated storage never lets one namespace read, or learn of, another namespace's blobs."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.client.http import MirClient, MirError
from signing.manifest import FileEntry, Manifest
from tests.e2e.test_synthetic_e2e import edge, model_dir, sentences, wait_scanned, write_jsonl
from tests.support.databases import BACKENDS, database_url
from tests.support.server import LiveServer, live_server
from tests.support.trees import make_tree

SECRET = b"weights that only the private namespace has " + os.urandom(64)
SECRET_DIGEST = "sha256:" + hashlib.sha256(SECRET).hexdigest()
SECRET_OID = SECRET_DIGEST.removeprefix("sha256:")


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def tenants(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A private namespace holding a secret file, and tokens for an attacker and a legitimate mounter.

    Each attack runs in a namespace and with a token of its own, so that one test proving possession (which
    lets that token read the bytes from then on) cannot help another.
    """
    src = make_tree(tmp_path_factory.mktemp("private") / "m", {"secret.bin": SECRET})
    server.cli("push", str(src), "private/model@1", check=True)
    with MirClient(server.url, server.admin_token) as admin:
        return {
            "attacker": admin.create_token("attacker", ["write:evil"])["token"],
            "owner": admin.create_token("owner", ["write:evilown"])["token"],
            "prober": admin.create_token("prober", ["write:evilprobe"])["token"],
            "hf_attacker": admin.create_token("hf-attacker", ["write:evilhf"])["token"],
            "mounter": admin.create_token("mounter", ["write:team", "read:private"])["token"],
        }


def _manifest() -> Manifest:
    return Manifest.from_entries([FileEntry("stolen.bin", len(SECRET), SECRET_DIGEST)])


def test_a_digest_alone_does_not_give_another_namespaces_bytes(server: LiveServer, tenants: dict[str, str]) -> None:
    with MirClient(server.url, tenants["attacker"]) as attacker:
        opened = attacker.open_version("evil/steal@1", _manifest())
        assert opened["missing"] == [SECRET_DIGEST], "the missing list must not reveal that the digest exists"
        with pytest.raises(MirError) as refused:
            attacker.commit("evil/steal@1")
        assert refused.value.status == 409 and refused.value.code == "blobs_missing"
        put = httpx.put(f"{server.url}/v1/artifacts/evil/steal/versions/1/blobs/{SECRET_DIGEST}",
                        content=b"x" * len(SECRET), headers=_auth(tenants["attacker"]))
        assert put.status_code == 400 and put.json()["error"]["code"] == "digest_mismatch"
        with pytest.raises(MirError):
            attacker.commit("evil/steal@1")
        got = httpx.get(f"{server.url}/v1/artifacts/evil/steal/versions/1/files/stolen.bin",
                        headers=_auth(tenants["attacker"]))
        assert got.status_code == 404
        assert SECRET not in got.content


def test_sending_the_bytes_proves_possession(server: LiveServer, tenants: dict[str, str], tmp_path: Path) -> None:
    """Whoever really has the bytes may push them; the server hashes them like any upload."""
    with MirClient(server.url, tenants["owner"]) as attacker:
        attacker.open_version("evilown/own@1", _manifest())
        put = attacker.request("PUT", f"/v1/artifacts/evilown/own/versions/1/blobs/{SECRET_DIGEST}", content=SECRET)
        assert put.status_code == 200 and put.json()["stored"] == "new"
        assert attacker.commit("evilown/own@1")["state"] == "committed"


def test_a_reader_of_the_holding_namespace_may_mount(server: LiveServer, tenants: dict[str, str]) -> None:
    with MirClient(server.url, tenants["mounter"]) as mounter:
        opened = mounter.open_version("team/mounted@1", _manifest())
        assert opened["missing"] == []
        assert mounter.commit("team/mounted@1")["state"] == "committed"
        got = mounter.request("GET", "/v1/artifacts/team/mounted/versions/1/files/stolen.bin")
        assert got.status_code == 200 and got.content == SECRET


def test_hf_lfs_answers_do_not_reveal_or_mount_foreign_blobs(server: LiveServer, tenants: dict[str, str]) -> None:
    token = tenants["hf_attacker"]
    batch = httpx.post(
        f"{server.url}/evilhf/hfsteal.git/info/lfs/objects/batch",
        headers={**_auth(token), "Content-Type": "application/vnd.git-lfs+json"},
        json={"operation": "upload", "transfers": ["basic"], "hash_algo": "sha256",
              "objects": [{"oid": SECRET_OID, "size": len(SECRET)}]},
    )
    assert batch.status_code == 200
    (item,) = batch.json()["objects"]
    assert "upload" in item["actions"], "a foreign blob must be asked for like a new one"
    verify = httpx.post(item["actions"]["verify"]["href"], headers=_auth(token),
                        json={"oid": SECRET_OID, "size": len(SECRET)})
    assert verify.status_code == 404
    other_ns = httpx.post(f"{server.url}/api/mir-lfs/{SECRET_OID}/verify?ns=private", headers=_auth(token),
                          json={"oid": SECRET_OID, "size": len(SECRET)})
    assert other_ns.status_code in (403, 404) and other_ns.status_code != 200

    header = {"key": "header", "value": {"summary": "steal"}}
    for value in ({"path": "w.bin", "algo": "sha256", "oid": SECRET_OID, "size": len(SECRET)},
                  {"path": "w.bin", "algo": "sha256", "oid": SECRET_OID}):
        body = b"".join(json.dumps(line).encode() + b"\n" for line in (header, {"key": "lfsFile", "value": value}))
        commit = httpx.post(f"{server.url}/api/models/evilhf/hfsteal/commit/main",
                            headers={**_auth(token), "Content-Type": "application/x-ndjson"}, content=body)
        assert commit.status_code in (404, 409), commit.text
    got = httpx.get(f"{server.url}/evilhf/hfsteal/resolve/main/w.bin", headers=_auth(token))
    assert got.status_code == 404 and SECRET not in got.content


def test_the_upload_route_does_not_skip_bytes_the_namespace_lacks(server: LiveServer, tenants: dict[str, str]) -> None:
    """Asking to upload a stored-elsewhere blob must not answer 'already stored'."""
    with MirClient(server.url, tenants["prober"]) as attacker:
        attacker.open_version("evilprobe/probe@1", _manifest())
        empty = httpx.put(f"{server.url}/v1/artifacts/evilprobe/probe/versions/1/blobs/{SECRET_DIGEST}",
                          content=b"", headers=_auth(tenants["prober"]))
        assert empty.status_code == 400
        assert empty.json()["error"]["code"] in ("size_mismatch", "upload_incomplete")


def _copy_of_another_tenants_generated_data(server: LiveServer, tmp_path: Path) -> list[dict[str, Any]]:
    """secretlab registers generated data; copyns pushes 20 of those records and 10 new ones.

    Returns what copyns sees: its synthetic report, its scans and its version.
    """
    generated = sentences(21, 30)
    with MirClient(server.url, server.admin_token) as admin:
        admin.push(model_dir(tmp_path / "gm", 7), "secretlab/generator@1")
        admin.push(write_jsonl(tmp_path / "gen", generated), "secretlab/gen-data@1", kind="dataset",
                   lineage=[edge("generated_by", "secretlab/generator@1")])
        wait_scanned(admin, "secretlab/gen-data@1")
        admin.json("PUT", "/v1/namespaces/copyns/policy", json={"max_synthetic_fraction": 0.3})
        copier = admin.create_token("copier", ["write:copyns"])["token"]
    with MirClient(server.url, copier) as client:
        client.push(write_jsonl(tmp_path / "copy", generated[:20] + sentences(22, 10)), "copyns/copy@1",
                    kind="dataset")
        wait_scanned(client, "copyns/copy@1")
        return [
            client.json("GET", "/v1/artifacts/copyns/copy/versions/1/synthetic"),
            client.json("GET", "/v1/artifacts/copyns/copy/versions/1/scans"),
            client.show_version("copyns/copy@1"),
        ]


def test_synthetic_matching_stays_inside_the_namespace(server: LiveServer, tmp_path: Path) -> None:
    """By default an upload is matched only against its own namespace's synthetic data: no membership oracle."""
    answers = _copy_of_another_tenants_generated_data(server, tmp_path)
    fingerprint = answers[0]["fingerprint"]
    assert answers[2]["scan_status"] == "clean"
    assert fingerprint["status"] == "clean" and fingerprint["matched_fraction"] == 0
    assert fingerprint["per_dataset"] == {} and fingerprint["examples"] == []
    for answer in answers:
        assert "secretlab" not in json.dumps(answer) and "hidden" not in json.dumps(answer)


@pytest.mark.parametrize("backend", BACKENDS)
def test_registry_wide_matching_hides_what_the_caller_cannot_read(backend: str, tmp_path: Path) -> None:
    """MIR_SYNTHETIC_MATCH_SCOPE=registry: the copy is flagged, but the report names nothing of that tenant."""
    env = {"MIR_SYNTHETIC_MATCH_SCOPE": "registry"}
    with database_url(backend, tmp_path) as url, live_server(url, tmp_path, env=env) as live:
        answers = _copy_of_another_tenants_generated_data(live, tmp_path)
        with MirClient(live.url, live.admin_token) as admin:
            seen = admin.json("GET", "/v1/artifacts/copyns/copy/versions/1/synthetic")["fingerprint"]
    assert answers[2]["scan_status"] == "suspicious"
    fingerprint = answers[0]["fingerprint"]
    assert fingerprint["matched_fraction"] == pytest.approx(20 / 30)
    assert fingerprint["per_dataset"] == {"hidden": 20} and fingerprint["per_generator"] == {"hidden": 20}
    assert all(e["dataset_ref"] == "hidden" and e["matched_ordinal"] is None for e in fingerprint["examples"])
    for answer in answers:
        assert "secretlab" not in json.dumps(answer)
    assert seen["per_dataset"] == {"secretlab/gen-data@1": 20}


def test_scan_times_do_not_reveal_that_a_digest_existed_elsewhere(server: LiveServer, tmp_path: Path) -> None:
    """A file another tenant pushed earlier shares its verdict, but not its scan time or history: it reads
    exactly like a file first scanned for this version."""
    shared = json.dumps({"shared": os.urandom(8).hex()}).encode()
    with MirClient(server.url, server.admin_token) as admin:
        admin.push(make_tree(tmp_path / "early", {"config.json": shared}), "early/model@1")
        wait_scanned(admin, "early/model@1")
        before = admin.json("GET", "/v1/artifacts/early/model/versions/1/scans")
        late_token = admin.create_token("latecomer", ["write:late"])["token"]
    own = json.dumps({"own": os.urandom(8).hex()}).encode()
    with MirClient(server.url, late_token) as late:
        late.push(make_tree(tmp_path / "late", {"config.json": shared, "own.json": own}), "late/model@1")
        committed = datetime.fromisoformat(wait_scanned(late, "late/model@1")["committed_at"])
        report = late.json("GET", "/v1/artifacts/late/model/versions/1/scans")
    with MirClient(server.url, server.admin_token) as admin:
        after = admin.json("GET", "/v1/artifacts/early/model/versions/1/scans")
    (early,) = before["files"]
    files = {f["path"]: f for f in report["files"]}
    inherited, fresh = files["config.json"], files["own.json"]
    assert datetime.fromisoformat(early["scanned_at"]) < committed, "the test needs the earlier upload to be older"
    assert inherited["verdict"] == early["verdict"] == fresh["verdict"] == "clean"  # same bytes, same verdict
    assert datetime.fromisoformat(inherited["scanned_at"]) >= committed
    assert inherited["history"] == [] == fresh["history"]
    assert inherited.keys() == fresh.keys() and inherited["scanned_at"] == fresh["scanned_at"]
    assert after == before, "a later push of the same bytes shows nothing in the earlier version either"
