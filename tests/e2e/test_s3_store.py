"""The registry on an S3-compatible object store (moto's real S3 HTTP server), changed by settings only.

Two replicas share one PostgreSQL schema and one bucket: one redirects downloads to presigned store URLs,
the other proxies every byte. The real clients (``mir`` CLI, SDK, ``huggingface_hub``) follow the redirects
and must refuse bytes that were corrupted in the store, since the API no longer sees them on the way out.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from registry.client.http import MirClient, MirError
from tests.e2e.test_hf_read import run_hf
from tests.support.databases import database_url
from tests.support.gate import MALICIOUS_PICKLE, wait_scanned
from tests.support.s3 import S3Endpoint, s3_server
from tests.support.server import MIR, LiveServer, live_server
from tests.support.trees import make_tree

MiB = 1 << 20
BUCKET = "mir-e2e"
SHARED_SECRETS = {"MIR_SIGNING_PASSPHRASE": "s3-e2e-passphrase", "MIR_HF_URL_SECRET": "s3-e2e-url-secret-" + "x" * 32}


@dataclass
class Replicas:
    redirect: LiveServer
    proxy: LiveServer
    s3: S3Endpoint
    database_url: str

    def objects(self) -> Any:
        return boto3.client("s3", endpoint_url=self.s3.url, region_name="us-east-1")


def store_env(s3: S3Endpoint, **extra: str) -> dict[str, str]:
    return {**s3.env(), "MIR_BLOB_STORE": f"s3://{BUCKET}/blobs", **SHARED_SECRETS, **extra}


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    work = tmp_path_factory.mktemp("s3")
    with s3_server() as s3, database_url("postgresql", work) as url:
        boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        (work / "a").mkdir()
        with live_server(url, work / "a", env=store_env(s3)) as first:
            (work / "b" / "config").mkdir(parents=True)  # the second replica finds the first one's admin token
            shutil.copy(first.config_dir / "credentials.json", work / "b" / "config" / "credentials.json")
            with live_server(url, work / "b", env=store_env(s3, MIR_BLOB_DOWNLOADS="proxy",
                                                            MIR_EMBEDDED_WORKERS="0")) as second:
                yield Replicas(first, second, s3, url)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def key_of(data: bytes) -> str:
    hex_ = hashlib.sha256(data).hexdigest()
    return f"blobs/sha256/{hex_[:2]}/{hex_[2:4]}/{hex_}"


def push(server: LiveServer, tmp: Path, ref: str, files: dict[str, bytes]) -> None:
    with MirClient(server.url, server.admin_token) as client:
        client.push(make_tree(tmp / ref.replace("/", "_").replace("@", "_"), files), ref)


def file_url(server: LiveServer, ref: str, path: str) -> str:
    repo, version = ref.split("@")
    return f"{server.url}/v1/artifacts/{repo}/versions/{version}/files/{path}"


def get(url: str, token: str | None, **headers: str) -> httpx.Response:
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url, headers={**auth, **headers}, timeout=60)


def test_blobs_land_in_the_bucket_and_pull_through_either_replica(replicas: Replicas, tmp_path: Path) -> None:
    big, small = os.urandom(36 * MiB + 123), b'{"layers": 2}'
    push(replicas.redirect, tmp_path, "acme/s3model@1", {"model.bin": big, "config.json": small})
    s3 = replicas.objects()
    assert s3.head_object(Bucket=BUCKET, Key=key_of(big))["ContentLength"] == len(big)
    assert not (replicas.redirect.data_dir / "blobs" / "sha256").exists(), "blobs went to the local directory"
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads"), "an upload was left unfinished"
    # model.bin went up while the client hashed it: into an incoming key, then copied to its digest's key
    assert "POST /v1/namespaces/{namespace}/blobs 200" in replicas.redirect.log()
    assert not s3.list_objects_v2(Bucket=BUCKET, Prefix="blobs/incoming/").get("Contents"), "an incoming copy stayed"

    # GET on the redirecting replica: 302 to the store, checks first; the URL carries no registry token.
    moved = get(file_url(replicas.redirect, "acme/s3model@1", "model.bin"), replicas.redirect.admin_token)
    assert moved.status_code == 302, moved.text
    location = moved.headers["location"]
    assert location.startswith(replicas.s3.url) and replicas.redirect.admin_token not in location
    assert moved.headers["x-mir-digest"] == digest_of(big)
    assert hashlib.sha256(httpx.get(location, timeout=60).content).hexdigest() == digest_of(big)[7:]
    # the proxying replica streams the same object itself
    proxied = get(file_url(replicas.proxy, "acme/s3model@1", "config.json"), replicas.proxy.admin_token)
    assert proxied.status_code == 200 and proxied.content == small

    for server, name in ((replicas.redirect, "via-redirect"), (replicas.proxy, "via-proxy")):
        out = tmp_path / name
        server.cli("pull", "acme/s3model@1", str(out), check=True)
        assert (out / "model.bin").read_bytes() == big and (out / "config.json").read_bytes() == small
    metrics = get(f"{replicas.redirect.url}/metrics", replicas.redirect.admin_token).text
    assert 'mir_downloads_total{mode="redirect"}' in metrics


def test_a_byte_corrupted_in_the_store_is_refused_by_every_client(replicas: Replicas, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 7)
    push(replicas.redirect, tmp_path, "acme/rotten@1", {"weights.bin": data, "config.json": b"{}"})
    s3 = replicas.objects()
    bad = bytearray(data)
    bad[len(data) // 2] ^= 0xFF
    s3.put_object(Bucket=BUCKET, Key=key_of(data), Body=bytes(bad))  # the store's copy rots behind our back

    out = tmp_path / "pulled"
    pulled = replicas.redirect.cli("pull", "acme/rotten@1", str(out))
    assert pulled.returncode != 0 and "does not match" in pulled.stderr + pulled.stdout
    assert not (out / "weights.bin").exists()

    home = tmp_path / "hf"
    results = run_hf(replicas.redirect, home, """
        from huggingface_hub import hf_hub_download
        attempt("file", lambda: hf_hub_download("acme/rotten", "weights.bin"))
    """)
    # huggingface_hub checks only the size of what it gets from a redirect: the rotten bytes reach its cache.
    assert results["file"]["ok"], results
    # The proxying replica checks every chunk against the list recorded at upload before sending it (here the
    # bad chunk is found before the headers go out), and marks the blob for every replica.
    checked = get(file_url(replicas.proxy, "acme/rotten@1", "weights.bin"), replicas.proxy.admin_token)
    assert checked.status_code == 500 and checked.json()["error"]["code"] == "blob_corrupt"
    refused = get(file_url(replicas.redirect, "acme/rotten@1", "weights.bin"), replicas.redirect.admin_token)
    assert refused.status_code == 500 and refused.json()["error"]["code"] == "blob_corrupt"
    assert "location" not in refused.headers, "a URL was issued for a blob known to be corrupt"

    s3.put_object(Bucket=BUCKET, Key=key_of(data), Body=data)  # repaired by pushing the bytes again
    push(replicas.redirect, tmp_path, "acme/rotten@2", {"weights.bin": data})
    assert get(file_url(replicas.redirect, "acme/rotten@1", "weights.bin"),
               replicas.redirect.admin_token).status_code == 302


def test_fsck_rehashes_objects_from_the_store(replicas: Replicas, tmp_path: Path) -> None:
    data = os.urandom(MiB + 5)
    push(replicas.redirect, tmp_path, "acme/fsck@1", {"a.bin": data})
    bad = bytearray(data)
    bad[5] ^= 1
    replicas.objects().put_object(Bucket=BUCKET, Key=key_of(data), Body=bytes(bad))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIR_")}
    env.update(store_env(replicas.s3), MIR_DATA_DIR=str(tmp_path / "fsck-data"),
               MIR_DATABASE_URL=replicas.database_url, COLUMNS="400")
    found = subprocess.run([*MIR, "fsck"], env=env, capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL)
    assert found.returncode == 1 and "corrupt" in found.stdout + found.stderr, found.stdout + found.stderr
    refused = get(file_url(replicas.redirect, "acme/fsck@1", "a.bin"), replicas.redirect.admin_token)
    assert refused.status_code == 500 and "location" not in refused.headers


def test_no_url_for_what_the_caller_may_not_read_or_a_quarantined_version(replicas: Replicas, tmp_path: Path) -> None:
    push(replicas.redirect, tmp_path, "secret/weights@1", {"w.bin": os.urandom(5000)})
    with MirClient(replicas.redirect.url, replicas.redirect.admin_token) as admin:
        other = admin.json("POST", "/v1/tokens", json={"name": "other", "scopes": ["read:acme"]})["token"]
    for token in (other, None, "mir_bogus"):
        answer = get(file_url(replicas.redirect, "secret/weights@1", "w.bin"), token)
        assert answer.status_code in (401, 403, 404) and "location" not in answer.headers, answer.text

    push(replicas.redirect, tmp_path, "acme/evil@1", {"model.pkl": MALICIOUS_PICKLE})
    with MirClient(replicas.redirect.url, replicas.redirect.admin_token) as admin:
        scanned = wait_scanned(admin, "acme/evil@1")  # the worker reads the object from the bucket
    assert scanned["scan_status"] == "malicious"
    blocked = get(file_url(replicas.redirect, "acme/evil@1", "model.pkl"), replicas.redirect.admin_token)
    assert blocked.status_code in (403, 409, 423) and "location" not in blocked.headers, blocked.text


def test_hf_clients_follow_the_store_redirect(replicas: Replicas, tmp_path: Path) -> None:
    weights, config = os.urandom(2 * MiB + 9), json.dumps({"model_type": "tiny"}).encode()
    push(replicas.redirect, tmp_path, "acme/hfs3@1", {"model.safetensors": weights, "config.json": config})
    head = httpx.head(f"{replicas.redirect.url}/acme/hfs3/resolve/main/model.safetensors",
                      headers={"Authorization": f"Bearer {replicas.redirect.admin_token}"})
    assert head.status_code == 302 and head.headers["location"].startswith(replicas.s3.url)
    assert head.headers["x-linked-size"] == str(len(weights)) and head.headers["x-repo-commit"]
    home = tmp_path / "hf"
    results = run_hf(replicas.redirect, home, """
        import hashlib
        from pathlib import Path
        from huggingface_hub import hf_hub_download, snapshot_download
        sha = lambda path: hashlib.sha256(Path(path).read_bytes()).hexdigest()
        attempt("file", lambda: sha(hf_hub_download("acme/hfs3", "model.safetensors")))
        attempt("snapshot", lambda: sorted(p.name for p in Path(snapshot_download("acme/hfs3")).iterdir()))
    """)
    assert results["file"] == {"ok": True, "value": hashlib.sha256(weights).hexdigest()}, results
    assert results["snapshot"]["value"] == ["config.json", "model.safetensors"], results


def test_store_outage_is_503_and_loses_nothing(tmp_path: Path) -> None:
    with s3_server() as s3, database_url("sqlite", tmp_path) as url:
        boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        (tmp_path / "srv").mkdir()
        env = store_env(s3, MIR_EMBEDDED_WORKERS="0")
        env["MIR_S3_ENDPOINT_URL"] = "http://127.0.0.1:9"  # nothing listens on the discard port
        with live_server(url, tmp_path / "srv", env=env) as live:
            ready = httpx.get(f"{live.url}/v1/ready", timeout=60)
            assert ready.status_code == 503, ready.text
            with MirClient(live.url, live.admin_token) as client, pytest.raises(MirError) as exc:
                client.push(make_tree(tmp_path / "t", {"a.bin": b"x" * 100}), "acme/down@1")
            assert exc.value.status == 503 and exc.value.code == "blob_store_unavailable", exc.value
            assert "Traceback" not in live.log()


def test_gc_on_the_bucket_takes_orphans_and_keeps_what_versions_list(replicas: Replicas, tmp_path: Path) -> None:
    kept = os.urandom(4000)
    push(replicas.redirect, tmp_path, "acme/gc@1", {"kept.bin": kept})
    orphan = os.urandom(3000)  # bytes of a push that died after its object was completed, with no row
    s3 = replicas.objects()
    s3.put_object(Bucket=BUCKET, Key=key_of(orphan), Body=orphan)
    s3.put_object(Bucket=BUCKET, Key="blobs/sha256/not-a-blob", Body=b"left alone: not a content address")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIR_")}
    env.update(store_env(replicas.s3), MIR_DATA_DIR=str(tmp_path / "gc-data"), MIR_DATABASE_URL=replicas.database_url)
    done = subprocess.run([*MIR, "gc", "--json", "--min-age", "0s"], env=env, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert digest_of(orphan) in {c["digest"] for c in report["collected"]}, report
    listed = {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix="blobs/").get("Contents", [])}
    assert key_of(orphan) not in listed and key_of(kept) in listed and "blobs/sha256/not-a-blob" in listed
    pulled = tmp_path / "after-gc"
    replicas.proxy.cli("pull", "acme/gc@1", str(pulled), check=True)
    assert (pulled / "kept.bin").read_bytes() == kept
