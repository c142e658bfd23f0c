"""The real ``huggingface_hub`` (and ``transformers``) downloading from the registry's HF endpoint.

Client code runs in a subprocess whose environment sets ``HF_ENDPOINT``,
``HF_HOME`` (a temporary folder), ``HF_HUB_DISABLE_TELEMETRY`` and
``HF_HUB_DISABLE_XET`` before ``huggingface_hub`` is imported: the library reads
them at import time. Nothing here contacts the public hub. The helpers at the top
are shared with the other ``test_hf_*`` modules.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.client.http import MirClient
from registry.hf.ids import commit_id
from tests.support.server import LiveServer
from tests.support.trees import make_tree, model_dir

RESULT_MARK = "@@HF-RESULT@@"
_PRELUDE = '''
import json, os, sys
results = {}

def attempt(name, fn):
    try:
        results[name] = {"ok": True, "value": fn()}
    except Exception as exc:
        chain, seen = [], exc
        while seen is not None and len(chain) < 6:
            chain.append(type(seen).__name__)
            seen = seen.__cause__ or seen.__context__
        response = getattr(exc, "response", None)
        results[name] = {"ok": False, "type": type(exc).__name__, "chain": chain, "message": str(exc),
                         "status": getattr(response, "status_code", None)}
'''


def hf_env(server: LiveServer, home: Path, token: str | None) -> dict[str, str]:
    """A client environment that can only reach this registry, with its own empty HF home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(
        HF_ENDPOINT=server.url,
        HF_HOME=str(home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_ETAG_TIMEOUT="30",
        TRANSFORMERS_VERBOSITY="error",
    )
    if token is not None:
        env["HF_TOKEN"] = token
    return env


def run_hf(
    server: LiveServer,
    home: Path,
    body: str,
    *,
    token: str | None = "admin",
    endpoint: str | None = None,
    env_changes: dict[str, str | None] | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Run ``body`` with the real client; it records outcomes with ``attempt(name, fn)``; returns them.

    ``params`` are available to the script as ``P`` (JSON round-tripped). ``env_changes`` sets variables
    (None removes one, e.g. ``HF_HUB_DISABLE_XET``).
    """
    script = (
        _PRELUDE
        + f"P = json.loads({json.dumps(json.dumps(params))})\n"
        + textwrap.dedent(body)
        + f"\nprint({RESULT_MARK!r} + json.dumps(results, default=str))\n"
    )
    env = hf_env(server, home, server.admin_token if token == "admin" else token)
    if endpoint is not None:
        env["HF_ENDPOINT"] = endpoint
    for key, value in (env_changes or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return dict(json.loads(line[len(RESULT_MARK) :]))
    raise AssertionError(f"client script failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def ok(results: dict[str, Any], name: str) -> Any:
    outcome = results[name]
    assert outcome["ok"], f"{name} failed: {outcome}"
    return outcome["value"]


def failed(results: dict[str, Any], name: str, error: str) -> dict[str, Any]:
    outcome = results[name]
    assert not outcome["ok"], f"{name} should have failed with {error}: {outcome}"
    assert outcome["type"] == error, f"{name}: expected {error}, got {outcome}"
    return dict(outcome)


def tree_digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def version_commit(server: LiveServer, reference: str) -> str:
    with MirClient(server.url, server.admin_token) as client:
        shown = client.show_version(reference)
    return commit_id(shown["artifact"], shown["version"], shown["manifest_digest"])


# -- fixtures ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def published(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """acme/tiny@1.0 and @2.0 (alias prod -> 1.0) and the dataset acme/corpus@1, pushed with mir."""
    root = tmp_path_factory.mktemp("published")
    v1 = model_dir(root / "v1")
    v2 = make_tree(root / "v2", {**{p.relative_to(v1).as_posix(): p.read_bytes() for p in v1.rglob("*")
                                    if p.is_file()}, "config.json": b'{"hidden_size": 128}'})
    data = make_tree(root / "corpus", {"train.jsonl": b'{"text": "hi"}\n', "splits/test.jsonl": b"{}\n"})
    with MirClient(server.url, server.admin_token) as client:
        client.push(v1, "acme/tiny@1.0")
        client.push(v2, "acme/tiny@2.0")
        client.set_alias("acme/tiny", "prod", "1.0")
        client.push(data, "acme/corpus@1", kind="dataset")
    return {"v1": v1, "v2": v2, "corpus": data}


# -- downloads --------------------------------------------------------------------------------------------


def test_downloads_by_version_alias_and_commit(server: LiveServer, published: dict[str, Path], tmp_path: Path) -> None:
    commit1, commit2 = version_commit(server, "acme/tiny@1.0"), version_commit(server, "acme/tiny@2.0")
    results = run_hf(
        server,
        tmp_path / "hf",
        """
        from pathlib import Path
        from huggingface_hub import HfApi, hf_hub_download, snapshot_download
        read = lambda **kw: Path(hf_hub_download("acme/tiny", "config.json", **kw)).read_text()
        attempt("main", lambda: read())
        attempt("version", lambda: read(revision="1.0"))
        attempt("alias", lambda: read(revision="prod"))
        attempt("commit", lambda: read(revision=P["commit1"]))
        attempt("short_commit", lambda: read(revision=P["commit1"][:10]))
        attempt("nested", lambda: Path(hf_hub_download("acme/tiny", "tokenizer/vocab.txt")).read_bytes().hex())
        attempt("snapshot", lambda: snapshot_download("acme/tiny"))
        attempt("snapshot_v1", lambda: snapshot_download("acme/tiny", revision="1.0"))
        attempt("dataset", lambda: snapshot_download("acme/corpus", repo_type="dataset"))
        attempt("info_sha", lambda: HfApi().model_info("acme/tiny", revision="1.0").sha)
        attempt("info_main", lambda: HfApi().model_info("acme/tiny", files_metadata=True).sha)
        attempt("tree", lambda: sorted(f.path for f in HfApi().list_repo_tree("acme/tiny", recursive=True)))
        attempt("paths_info", lambda: [(type(e).__name__, e.path) for e in HfApi().get_paths_info(
            "acme/tiny", ["tokenizer", "config.json", "missing.bin"])])
        attempt("refs", lambda: {r.name: r.target_commit for r in HfApi().list_repo_refs("acme/tiny").tags})
        def check():
            v = HfApi().verify_repo_checksums("acme/tiny")
            return {"checked": v.checked_count, "mismatches": v.mismatches, "missing": v.missing_paths}
        attempt("verify", check)
        """,
        commit1=commit1,
    )
    v1, v2 = published["v1"], published["v2"]
    assert ok(results, "main") == (v2 / "config.json").read_text()
    for name in ("version", "alias", "commit", "short_commit"):
        assert ok(results, name) == (v1 / "config.json").read_text(), name
    assert ok(results, "nested") == (v2 / "tokenizer/vocab.txt").read_bytes().hex()
    snapshot = Path(ok(results, "snapshot"))
    assert snapshot.name == commit2
    assert tree_digests(snapshot) == tree_digests(v2)
    assert tree_digests(Path(ok(results, "snapshot_v1"))) == tree_digests(v1)
    assert tree_digests(Path(ok(results, "dataset"))) == tree_digests(published["corpus"])
    assert ok(results, "info_sha") == commit1 and ok(results, "info_main") == commit2
    assert ok(results, "tree") == ["config.json", "empty.txt", "model.safetensors", "tokenizer", "tokenizer/vocab.txt"]
    assert ok(results, "refs") == {"1.0": commit1, "2.0": commit2}
    assert ok(results, "paths_info") == [["RepoFolder", "tokenizer"], ["RepoFile", "config.json"]]
    assert ok(results, "verify") == {"checked": 4, "mismatches": [], "missing": []}
    # The cache keys blobs by our ETag, the sha256; hub >= 1.22 also cached the tree listing of the commit.
    repo_cache = tmp_path / "hf" / "hub" / "models--acme--tiny"
    blobs = {p.name for p in (repo_cache / "blobs").iterdir()}
    assert blobs >= set(tree_digests(v2).values())
    assert (repo_cache / "trees" / f"{commit2}.json").is_file()


def test_errors_map_to_the_clients_exceptions(
    server: LiveServer, published: dict[str, Path], tmp_path: Path
) -> None:
    with MirClient(server.url, server.admin_token) as client:
        other = client.create_token("other-ns-reader", ["read:elsewhere"])["token"]
    results = run_hf(
        server,
        tmp_path / "hf",
        """
        from huggingface_hub import HfApi, hf_hub_download
        attempt("missing_file", lambda: hf_hub_download("acme/tiny", "nope.txt"))
        attempt("missing_revision", lambda: hf_hub_download("acme/tiny", "config.json", revision="9.9"))
        attempt("pr_revision", lambda: hf_hub_download("acme/tiny", "config.json", revision="refs/pr/1"))
        attempt("missing_repo", lambda: hf_hub_download("acme/nope", "config.json"))
        attempt("wrong_type", lambda: HfApi().model_info("acme/corpus"))
        attempt("bad_token_info", lambda: HfApi().model_info("acme/tiny", token="mir_not-a-real-token"))
        attempt("bad_token_download", lambda: hf_hub_download("acme/tiny", "config.json", token="mir_nope"))
        attempt("no_token", lambda: HfApi().model_info("acme/tiny", token=False))
        attempt("no_token_download", lambda: hf_hub_download("acme/tiny", "empty.txt", token=False))
        attempt("other_namespace", lambda: HfApi().model_info("acme/tiny", token=P["other"]))
        attempt("whoami", lambda: HfApi().whoami()["name"])
        """,
        other=other,
    )
    commit2 = version_commit(server, "acme/tiny@2.0")
    missing = failed(results, "missing_file", "RemoteEntryNotFoundError")
    assert missing["status"] == 404
    # The 404 carried X-Repo-Commit, so the client cached the miss under the right commit.
    assert (tmp_path / "hf/hub/models--acme--tiny/.no_exist" / commit2 / "nope.txt").exists()
    assert failed(results, "missing_revision", "RevisionNotFoundError")["status"] == 404
    assert failed(results, "pr_revision", "RevisionNotFoundError")["status"] == 404
    assert failed(results, "missing_repo", "RepositoryNotFoundError")["status"] == 404
    assert "not a model repo" in failed(results, "wrong_type", "RepositoryNotFoundError")["message"]
    bad = failed(results, "bad_token_info", "HfHubHTTPError")
    assert bad["status"] == 401 and "Invalid credentials in Authorization header" in bad["message"]
    assert "invalid token" in bad["message"]
    # Nothing is cached, so the download raises the 401 itself rather than "check your connection".
    bad = failed(results, "bad_token_download", "HfHubHTTPError")
    assert bad["status"] == 401 and "Invalid credentials in Authorization header" in bad["message"]
    anonymous = failed(results, "no_token", "RepositoryNotFoundError")
    assert anonymous["status"] == 401 and "authentication required" in anonymous["message"]
    assert failed(results, "no_token_download", "RepositoryNotFoundError")["status"] == 401
    assert failed(results, "other_namespace", "RepositoryNotFoundError")["status"] == 404
    assert ok(results, "whoami") == "admin"


def test_head_headers_range_and_raw_revision(server: LiveServer, published: dict[str, Path]) -> None:
    auth = {"Authorization": f"Bearer {server.admin_token}"}
    weights = (published["v2"] / "model.safetensors").read_bytes()
    url = f"{server.url}/acme/tiny/resolve/main/model.safetensors"
    head = httpx.head(url, headers=auth)
    assert head.status_code == 200
    assert head.headers["x-repo-commit"] == version_commit(server, "acme/tiny@2.0")
    assert head.headers["etag"] == f'"{hashlib.sha256(weights).hexdigest()}"'
    assert int(head.headers["content-length"]) == len(weights)
    assert head.headers["accept-ranges"] == "bytes"
    assert not [h for h in head.headers if h.lower().startswith("x-xet")]
    ranged = httpx.get(url, headers={**auth, "Range": "bytes=1000-"})
    assert ranged.status_code == 206
    assert ranged.headers["content-range"] == f"bytes 1000-{len(weights) - 1}/{len(weights)}"
    assert ranged.content == weights[1000:]
    # A revision with '/' arrives percent-encoded as one segment; it must not be split into a path.
    pr = httpx.head(f"{server.url}/acme/tiny/resolve/refs%2Fpr%2F1/config.json", headers=auth)
    assert pr.status_code == 404 and pr.headers["x-error-code"] == "RevisionNotFound"
    anonymous = httpx.head(url)
    assert anonymous.status_code == 401 and anonymous.headers["x-error-code"] == "RepoNotFound"
    tree = httpx.get(f"{server.url}/api/models/acme/tiny/tree/main", headers=auth, params={"recursive": "true"})
    assert tree.status_code == 200 and all("xetHash" not in entry for entry in tree.json())
    assert httpx.get(f"{server.url}/api/agent-harnesses").json() == {"standardEnvVars": [], "harnesses": {}}


class CuttingProxy:
    """A TCP proxy to the server that cuts the first plain GET naming ``needle`` after ``limit`` response bytes.

    That is what a dropped connection looks like to the client, which then resumes with a Range request.
    """

    def __init__(self, upstream: str, needle: bytes, limit: int) -> None:
        self.upstream = ("127.0.0.1", int(upstream.rsplit(":", 1)[1]))
        self.needle, self.limit = needle.lower(), limit
        self.heads: list[bytes] = []
        self.cut = False
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.upstream)
        armed = threading.Event()

        def pump_up() -> None:
            with contextlib.suppress(OSError):
                while data := client.recv(65536):
                    head = data[:4096].lower()
                    if head.startswith((b"get ", b"head ")):
                        self.heads.append(head)
                        if not self.cut and head.startswith(b"get ") and self.needle in head and b"range:" not in head:
                            self.cut = True
                            armed.set()
                    upstream.sendall(data)

        threading.Thread(target=pump_up, daemon=True).start()
        sent = 0
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if armed.is_set():
                    data = data[: max(0, self.limit - sent)]
                    sent += len(data)
                    if not data:
                        break
                client.sendall(data)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.sock.close()


def test_client_resumes_an_interrupted_download_with_a_range_request(server: LiveServer, tmp_path: Path) -> None:
    """The connection drops mid-file; the real client resumes with ``Range: bytes=N-`` and gets the rest (206).

    The client writes to disk in 10 MiB chunks and resumes from what it wrote, so the file is a bit larger.
    """
    weights = os.urandom(12 << 20)
    with MirClient(server.url, server.admin_token) as client:
        client.push(make_tree(tmp_path / "big", {"weights.bin": weights}), "acme/big@1")
    proxy = CuttingProxy(server.url, b"weights.bin", limit=11 << 20)
    try:
        results = run_hf(
            server,
            tmp_path / "hf",
            """
            import hashlib
            from huggingface_hub import hf_hub_download
            attempt("resumed", lambda: hashlib.sha256(open(hf_hub_download("acme/big", "weights.bin"), "rb").read())
                    .hexdigest())
            """,
            endpoint=proxy.url,
        )
    finally:
        proxy.close()
    assert ok(results, "resumed") == hashlib.sha256(weights).hexdigest()
    assert proxy.cut
    assert any(h.startswith(b"get ") and b"range: bytes=10485760-" in h for h in proxy.heads)


def test_quarantined_version_is_refused_even_when_cached(server: LiveServer, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "q", {"config.json": b'{"q": 1}', "w.bin": os.urandom(5000)})
    with MirClient(server.url, server.admin_token) as client:
        client.push(src, "acme/quar@1")
        (src / "config.json").write_bytes(b'{"q": 2}')
        client.push(src, "acme/quar@2")
        client.set_alias("acme/quar", "prod", "1")
        client.push(src, "acme/quar-child@1", lineage=[{"type": "fine_tuned_from", "parent": {"ref": "acme/quar@1"}}])
    body = """
        from huggingface_hub import hf_hub_download
        attempt("prod", lambda: open(hf_hub_download("acme/quar", "config.json", revision="prod")).read())
        attempt("main", lambda: open(hf_hub_download("acme/quar", "config.json")).read())
        attempt("child", lambda: open(hf_hub_download("acme/quar-child", "config.json")).read())
    """
    before = run_hf(server, tmp_path / "hf", body)
    assert ok(before, "prod") == '{"q": 1}' and ok(before, "main") == '{"q": 2}'
    with MirClient(server.url, server.admin_token) as client:
        client.quarantine("acme/quar@1", "poisoned training data")
    after = run_hf(server, tmp_path / "hf", body)  # same HF_HOME: prod's file is in the cache
    refused = failed(after, "prod", "RevisionNotFoundError")
    assert "quarantined" in refused["message"] and "poisoned training data" in refused["message"]
    assert ok(after, "main") == '{"q": 2}'
    assert ok(after, "child") == '{"q": 2}'  # descendants stay readable, flagged
    head = httpx.head(
        f"{server.url}/acme/quar-child/resolve/main/config.json",
        headers={"Authorization": f"Bearer {server.admin_token}"},
    )
    assert head.headers["x-mir-quarantine"] == "affected" and "acme/quar@1" in head.headers["x-hf-warning"]


def test_transformers_loads_config_and_tokenizer(server: LiveServer, tmp_path: Path) -> None:
    """``AutoConfig`` / ``AutoTokenizer.from_pretrained`` against the registry.

    Client compatibility only (the database work is the same as in the tests above), and importing
    transformers is slow, so it runs on the SQLite server alone.
    """
    if not server.database_url.startswith("sqlite"):
        pytest.skip("client-compatibility test: covered once, on the SQLite server")
    vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\n"
    src = make_tree(
        tmp_path / "bert",
        {
            "config.json": json.dumps({"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 1,
                                       "num_attention_heads": 2, "intermediate_size": 37, "vocab_size": 7}).encode(),
            "tokenizer_config.json": b'{"tokenizer_class": "BertTokenizer", "do_lower_case": true}',
            "vocab.txt": vocab.encode(),
        },
    )
    with MirClient(server.url, server.admin_token) as client:
        client.push(src, "acme/bert-tiny@1")
    results = run_hf(
        server,
        tmp_path / "hf",
        """
        from transformers import AutoConfig, AutoTokenizer
        attempt("config", lambda: AutoConfig.from_pretrained("acme/bert-tiny").hidden_size)
        attempt("tokens", lambda: AutoTokenizer.from_pretrained("acme/bert-tiny")("Hello world")["input_ids"])
        """,
    )
    assert ok(results, "config") == 32
    assert ok(results, "tokens") == [2, 5, 6, 3]
