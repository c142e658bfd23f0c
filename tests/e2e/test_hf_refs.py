"""Everyday HF calls beyond download and upload, and commit ids on ``/v1`` and the CLI.

- ``list_repo_commits``, ``create_branch``/``delete_branch``, ``create_tag``/``delete_tag``, ``list_models`` and
  ``list_datasets`` with the real client: versions are commits, branches are aliases, tags are aliases that never
  move (on the HF routes and on ``/v1``), and lists show only what the token may read.
- A repo made by ``create_repo`` and holding no version yet: ``model_info``, ``upload_folder`` of an empty
  folder, ``snapshot_download`` and ``hf_hub_download`` answer as for an empty repo on the Hub.
- The 40-hex commit id an HF client shows names the version on ``/v1`` and in ``mir`` too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from registry.client.http import MirClient
from registry.hf.ids import commit_id, empty_commit_id
from tests.e2e.test_hf_read import failed, ok, run_hf
from tests.e2e.test_hf_write import HUB_036
from tests.support.server import LiveServer
from tests.support.trees import make_tree


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _commit(client: MirClient, reference: str) -> str:
    shown = client.show_version(reference)
    return commit_id(shown["artifact"], shown["version"], shown["manifest_digest"])


def _push(client: MirClient, root: Path, reference: str, text_: str, **kw: Any) -> str:
    client.push(make_tree(root, {"w.txt": text_.encode()}), reference, **kw)
    return _commit(client, reference)


def _latest_version(server: LiveServer, repo: str) -> str:
    with MirClient(server.url, server.admin_token) as client:
        return str(client.show_version(f"{repo}@latest")["version"])


def _audit(server: LiveServer, artifact: str) -> list[dict[str, Any]]:
    entries = httpx.get(f"{server.url}/v1/audit/entries", params={"artifact": artifact, "limit": 500},
                        headers=_auth(server.admin_token)).json()["items"]
    return [e for e in entries if e["action"] == "alias.moved"]


# -- commits, branches, tags, repo lists ------------------------------------------------------------------


def test_commits_branches_tags_and_repo_lists(server: LiveServer, tmp_path: Path) -> None:
    with MirClient(server.url, server.admin_token) as client:
        c1 = _push(client, tmp_path / "1", "acme/refs@1", "one")
        c2 = _push(client, tmp_path / "2", "acme/refs@2", "two")
        c3 = _push(client, tmp_path / "3", "acme/refs@3", "three")
        _push(client, tmp_path / "d", "acme/refs-data@1", "data", kind="dataset")
        _push(client, tmp_path / "s", "secret/refs-hidden@1", "hidden")
        reader = client.create_token("refs-reader", ["read:acme"])["token"]
    results = run_hf(
        server,
        tmp_path / "hf",
        """
        from huggingface_hub import HfApi
        from huggingface_hub.utils import paginate
        api, repo = HfApi(), "acme/refs"
        ep, headers = api.endpoint, api._build_hf_headers()
        ids = lambda commits: [c.commit_id for c in commits]
        attempt("commits", lambda: [(c.commit_id, c.title, c.authors) for c in api.list_repo_commits(repo)])
        attempt("commits_at_2", lambda: ids(api.list_repo_commits(repo, revision="2")))
        attempt("commits_at_c1", lambda: ids(api.list_repo_commits(repo, revision=P["c1"])))
        attempt("commits_formatted", lambda: api.list_repo_commits(repo, formatted=True)[0].formatted_title)
        attempt("commits_paged", lambda: [c["id"] for c in paginate(f"{ep}/api/models/{repo}/commits/main",
                                                                     params={"limit": 1}, headers=headers)])
        attempt("commits_missing_rev", lambda: api.list_repo_commits(repo, revision="9.9"))
        attempt("branch", lambda: api.create_branch(repo, branch="staging", revision="1"))
        attempt("branch_sha", lambda: api.model_info(repo, revision="staging").sha)
        attempt("branch_again", lambda: api.create_branch(repo, branch="staging"))
        attempt("branch_exist_ok", lambda: api.create_branch(repo, branch="staging", exist_ok=True))
        attempt("branch_main", lambda: api.create_branch(repo, branch="main"))
        attempt("branch_from_main", lambda: api.create_branch(repo, branch="nightly"))
        attempt("branch_bad_name", lambda: api.create_branch(repo, branch="feature/x"))
        attempt("branch_missing_rev", lambda: api.create_branch(repo, branch="nowhere", revision="9.9"))
        attempt("tag", lambda: api.create_tag(repo, tag="golden", revision=P["c2"], tag_message="blessed"))
        attempt("tag_sha", lambda: api.model_info(repo, revision="golden").sha)
        attempt("tag_again", lambda: api.create_tag(repo, tag="golden", revision="3"))
        attempt("tag_exist_ok", lambda: api.create_tag(repo, tag="golden", revision="3", exist_ok=True))
        attempt("tag_on_version", lambda: api.create_tag(repo, tag="2"))
        attempt("tag_dotted", lambda: api.create_tag(repo, tag="v1.0"))
        attempt("tag_missing_rev", lambda: api.create_tag(repo, tag="orphan", revision="9.9"))
        attempt("tag_read_only", lambda: api.create_tag(repo, tag="sneaky", token=P["reader"]))
        attempt("delete_tag", lambda: api.delete_tag(repo, tag="golden"))
        attempt("delete_tag_version", lambda: api.delete_tag(repo, tag="1"))
        attempt("delete_tag_missing", lambda: api.delete_tag(repo, tag="nothing"))
        attempt("delete_branch_tag", lambda: api.delete_branch(repo, branch="golden"))
        attempt("delete_branch_main", lambda: api.delete_branch(repo, branch="main"))
        attempt("delete_branch", lambda: api.delete_branch(repo, branch="nightly"))
        attempt("delete_branch_again", lambda: api.delete_branch(repo, branch="nightly"))
        def refs():
            r = api.list_repo_refs(repo)
            return {"branches": {b.name: b.target_commit for b in r.branches},
                    "tags": {t.name: t.target_commit for t in r.tags}}
        attempt("refs", refs)
        names = lambda listed: sorted(m.id for m in listed)
        attempt("models", lambda: names(api.list_models()))
        attempt("models_reader", lambda: names(api.list_models(token=P["reader"])))
        attempt("models_search", lambda: names(api.list_models(search="REFS")))
        attempt("models_author", lambda: names(api.list_models(author="secret")))
        attempt("models_author_reader", lambda: names(api.list_models(author="secret", token=P["reader"])))
        attempt("models_limit", lambda: len(list(api.list_models(search="refs", limit=1))))
        attempt("models_filter", lambda: names(api.list_models(filter="text-classification")))
        attempt("models_paged", lambda: sorted(m["id"] for m in paginate(
            f"{ep}/api/models", params={"search": "refs", "limit": 1}, headers=headers)))
        attempt("datasets", lambda: [(d.id, d.created_at is not None) for d in api.list_datasets(search="refs")])
        """,
        c1=c1,
        c2=c2,
        reader=reader,
    )
    assert ok(results, "commits") == [[c3, "version 3", ["admin"]], [c2, "version 2", ["admin"]],
                                      [c1, "version 1", ["admin"]]]
    assert ok(results, "commits_at_2") == [c2, c1]
    assert ok(results, "commits_at_c1") == [c1]
    assert ok(results, "commits_formatted") == "version 3"
    assert ok(results, "commits_paged") == [c3, c2, c1]  # three pages, each found through the Link header
    assert failed(results, "commits_missing_rev", "RevisionNotFoundError")["status"] == 404
    # Branches: aliases, made through the same service as `mir alias set`.
    ok(results, "branch")
    assert ok(results, "branch_sha") == c1
    assert failed(results, "branch_again", "HfHubHTTPError")["status"] == 409
    ok(results, "branch_exist_ok")
    assert failed(results, "branch_main", "HfHubHTTPError")["status"] == 409
    ok(results, "branch_from_main")
    assert "registry aliases" in failed(results, "branch_bad_name", "BadRequestError")["message"]
    assert failed(results, "branch_missing_rev", "RevisionNotFoundError")["status"] == 404
    # Tags: aliases that never move; an existing name answers 409, which exist_ok accepts.
    ok(results, "tag")
    assert ok(results, "tag_sha") == c2
    assert failed(results, "tag_again", "HfHubHTTPError")["status"] == 409
    ok(results, "tag_exist_ok")
    assert "a version" in failed(results, "tag_on_version", "HfHubHTTPError")["message"]
    assert "registry aliases" in failed(results, "tag_dotted", "BadRequestError")["message"]
    assert failed(results, "tag_missing_rev", "RevisionNotFoundError")["status"] == 404
    assert failed(results, "tag_read_only", "HfHubHTTPError")["status"] == 403
    immutable = failed(results, "delete_tag", "HfHubHTTPError")
    assert immutable["status"] == 409 and "tags never move" in immutable["message"]
    assert failed(results, "delete_tag_version", "HfHubHTTPError")["status"] == 409
    assert failed(results, "delete_tag_missing", "RevisionNotFoundError")["status"] == 404
    assert "tags never move" in failed(results, "delete_branch_tag", "HfHubHTTPError")["message"]
    assert failed(results, "delete_branch_main", "HfHubHTTPError")["status"] == 409
    ok(results, "delete_branch")
    assert failed(results, "delete_branch_again", "RevisionNotFoundError")["status"] == 404
    assert ok(results, "refs") == {
        "branches": {"main": c3, "latest": c3, "staging": c1},
        "tags": {"golden": c2, "1": c1, "2": c2, "3": c3},
    }
    # Lists: only readable namespaces, whatever the filters say.
    assert ok(results, "models") == ["acme/refs", "secret/refs-hidden"]
    assert ok(results, "models_reader") == ["acme/refs"]
    assert ok(results, "models_search") == ["acme/refs", "secret/refs-hidden"]
    assert ok(results, "models_author") == ["secret/refs-hidden"]
    assert ok(results, "models_author_reader") == []
    assert ok(results, "models_limit") == 1
    assert ok(results, "models_filter") == []
    assert ok(results, "models_paged") == ["acme/refs", "secret/refs-hidden"]
    assert ok(results, "datasets") == [["acme/refs-data", True]]

    # /v1 refuses to move or delete the tag too; branches stay movable. Every change was audited.
    auth = _auth(server.admin_token)
    moved = httpx.put(f"{server.url}/v1/artifacts/acme/refs/aliases/golden", json={"version": "3"}, headers=auth)
    assert moved.status_code == 409 and moved.json()["error"]["code"] == "alias_immutable"
    deleted = httpx.delete(f"{server.url}/v1/artifacts/acme/refs/aliases/golden", headers=auth)
    assert deleted.status_code == 409 and deleted.json()["error"]["code"] == "alias_immutable"
    same = httpx.put(f"{server.url}/v1/artifacts/acme/refs/aliases/golden", json={"version": "2"}, headers=auth)
    assert same.status_code == 200 and same.json()["moved"] is False
    staging = httpx.put(f"{server.url}/v1/artifacts/acme/refs/aliases/staging", json={"version": c3}, headers=auth)
    assert staging.status_code == 200 and staging.json() == {"alias": "staging", "version": "3", "moved": True}
    cli = server.cli("alias", "rm", "acme/refs", "golden")
    assert cli.returncode != 0 and "tags never move" in cli.stdout + cli.stderr
    moves = [(e["details"]["alias"], e["details"]["from"], e["details"]["to"], e["details"].get("tag"),
              e["details"]["reason"], e["actor"]) for e in _audit(server, "acme/refs")]
    assert ("staging", None, "1", None, "hf create_branch", "admin") in moves
    assert ("golden", None, "2", True, "blessed", "admin") in moves
    assert ("nightly", "3", None, None, "hf delete_branch", "admin") in moves
    assert ("staging", "1", "3", None, None, "admin") in moves
    assert not [m for m in moves if m[0] == "golden" and m[1] is not None]
    history = httpx.get(f"{server.url}/v1/artifacts/acme/refs/aliases/golden/history", headers=auth).json()
    assert [(h["from"], h["to"], h["reason"]) for h in history] == [(None, "2", "blessed")]


# -- repos with no version yet ----------------------------------------------------------------------------


_EMPTY_REPO_SCRIPT = """
import logging, os
from pathlib import Path
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
api, repo = HfApi(), P["repo"]
api.create_repo(repo, exist_ok=True)
api.create_repo(P["dataset"], repo_type="dataset", exist_ok=True)
warnings = []
class Keep(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())
logging.getLogger("huggingface_hub").addHandler(Keep())
attempt("info", lambda: (lambda i: (i.sha, i.siblings))(api.model_info(repo)))
attempt("info_main", lambda: api.model_info(repo, revision="main").siblings)
attempt("dataset_info", lambda: (lambda i: (i.sha, i.siblings))(api.dataset_info(P["dataset"])))
attempt("upload_empty", lambda: api.upload_folder(repo_id=repo, folder_path=P["empty"]).oid)
attempt("warned", lambda: any("empty commit" in w for w in warnings))
attempt("download", lambda: hf_hub_download(repo, "config.json"))
attempt("download_version", lambda: hf_hub_download(repo, "config.json", revision="1.0"))
def snapshot():
    path = Path(snapshot_download(repo))
    return path.name, sorted(os.listdir(path)) if path.exists() else []
attempt("snapshot", snapshot)
attempt("tree", lambda: list(api.list_repo_tree(repo, recursive=True)))
attempt("file_exists", lambda: api.file_exists(repo, "config.json"))
attempt("commits", lambda: api.list_repo_commits(repo))
attempt("tag", lambda: api.create_tag(repo, tag="first"))
attempt("first_commit", lambda: api.upload_folder(repo_id=repo, folder_path=P["full"],
                                                  parent_commit=P["empty_commit"]).oid)
attempt("after", lambda: (lambda i: (i.sha, sorted(s.rfilename for s in i.siblings)))(api.model_info(repo)))
attempt("commits_after", lambda: [c.commit_id for c in api.list_repo_commits(repo)])
attempt("tag_after", lambda: api.create_tag(repo, tag="first"))
attempt("branch_after", lambda: api.create_branch(repo, branch="dev"))
attempt("refs_after", lambda: (lambda r: (sorted(b.name for b in r.branches), sorted(t.name for t in r.tags)))(
    api.list_repo_refs(repo)))
attempt("listed", lambda: [m.id for m in api.list_models(search=repo)])
"""


@pytest.mark.parametrize("hub", ["2.4", "0.36"])
def test_repo_with_no_version_yet(server: LiveServer, tmp_path: Path, hub: str) -> None:
    repo, dataset = f"acme/empty-{hub.replace('.', '')}", f"acme/empty-data-{hub.replace('.', '')}"
    (tmp_path / "nothing").mkdir()
    full = make_tree(tmp_path / "full", {"config.json": b'{"a": 1}'})
    changes: dict[str, str | None] = {"PYTHONPATH": str(HUB_036)} if hub == "0.36" else {}
    results = run_hf(
        server, tmp_path / "hf", _EMPTY_REPO_SCRIPT, env_changes=changes, repo=repo, dataset=dataset,
        empty=str(tmp_path / "nothing"), full=str(full), empty_commit=empty_commit_id(repo),
    )
    empty = empty_commit_id(repo)
    assert ok(results, "info") == [empty, []]
    assert ok(results, "info_main") == []
    assert ok(results, "dataset_info") == [empty_commit_id(dataset), []]
    assert ok(results, "upload_empty") == empty  # the client skipped the empty commit and reported the head
    assert ok(results, "warned") is True
    missing = "RemoteEntryNotFoundError" if hub == "2.4" else "EntryNotFoundError"
    assert "holds no version yet" in failed(results, "download", missing)["message"]
    assert failed(results, "download_version", "RevisionNotFoundError")["status"] == 404
    assert ok(results, "snapshot") == [empty, []]  # nothing to fetch (the client creates no folder for it)
    assert ok(results, "tree") == []
    assert ok(results, "file_exists") is False
    assert ok(results, "commits") == []
    assert failed(results, "tag", "RevisionNotFoundError")["status"] == 404
    first = ok(results, "first_commit")
    assert ok(results, "after") == [first, ["config.json"]]
    assert ok(results, "commits_after") == [first]
    ok(results, "tag_after"), ok(results, "branch_after")
    assert ok(results, "refs_after") == [["dev", "latest", "main"], ["first", _latest_version(server, repo)]]
    assert ok(results, "listed") == [repo]
    with MirClient(server.url, server.admin_token) as client:
        shown = client.show_version(f"{repo}@latest")
    assert commit_id(repo, shown["version"], shown["manifest_digest"]) == first
    assert [(f["path"]) for f in shown["files"]] == ["config.json"]
    # The empty commit names nothing once the repo has a version.
    gone = httpx.get(f"{server.url}/api/models/{repo}/revision/{empty}", headers=_auth(server.admin_token))
    assert gone.status_code == 404 and gone.headers["x-error-code"] == "RevisionNotFound"


# -- commit ids on /v1 and the CLI ------------------------------------------------------------------------


def test_commit_ids_name_versions_on_v1_and_the_cli(server: LiveServer, tmp_path: Path) -> None:
    auth = _auth(server.admin_token)
    with MirClient(server.url, server.admin_token) as client:
        c1 = _push(client, tmp_path / "1", "acme/cid@1", "one")
        c2 = _push(client, tmp_path / "2", "acme/cid@2", "two")
        _push(client, tmp_path / "child", "acme/cid-child@1", "child",
              lineage=[{"type": "fine_tuned_from", "parent": {"ref": f"acme/cid@{c1}"}}])
    unknown = "0" * 40
    shown = server.cli("show", f"acme/cid@{c1}")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "w.txt" in shown.stdout and "@1" in shown.stdout
    missing = server.cli("show", f"acme/cid@{unknown}")
    assert missing.returncode != 0 and "version_not_found" in missing.stdout + missing.stderr
    pulled = server.cli("pull", f"acme/cid@{c2}", str(tmp_path / "pulled"))
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert (tmp_path / "pulled" / "w.txt").read_text() == "two"
    verified = server.cli("verify", f"acme/cid@{c2}", str(tmp_path / "pulled"))
    # Everything but the signature check (nothing here is signed) holds, against version 2.
    assert "ok   files: 1 files match" in verified.stdout and "ok   registry countersignature" in verified.stdout
    assert "against acme/cid@2 failed" in verified.stderr and "FAIL signature" in verified.stdout
    bundle = server.cli("bundle", f"acme/cid@{c1}", "-o", str(tmp_path / "b.json"))
    assert bundle.returncode == 0, bundle.stdout + bundle.stderr
    attested = json.loads((tmp_path / "b.json").read_text())
    assert (attested["artifact"], attested["version"]) == ("acme/cid", "1")
    lineage = json.loads(server.cli("lineage", "acme/cid-child@1", "--format", "json", check=True).stdout)
    assert "acme/cid@1" in json.dumps(lineage)
    down = server.cli("lineage", f"acme/cid@{c1}", "--down", "--format", "json")
    assert down.returncode == 0 and "acme/cid-child@1" in down.stdout

    v1 = f"{server.url}/v1/artifacts/acme/cid/versions"
    assert httpx.get(f"{v1}/{c1}", headers=auth).json()["version"] == "1"
    assert httpx.get(f"{v1}/{c1}/files/w.txt", headers=auth).content == b"one"
    assert httpx.get(f"{v1}/{c2}/lineage", headers=auth).status_code == 200
    for url in (f"{v1}/{unknown}", f"{v1}/{unknown}/files/w.txt", f"{v1}/{c1.upper()}"):
        answer = httpx.get(url, headers=auth)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "version_not_found", url
    # Another artifact's commit id names nothing here.
    other = httpx.get(f"{server.url}/v1/artifacts/acme/cid-child/versions/{c1}", headers=auth)
    assert other.status_code == 404
    prod = httpx.put(f"{server.url}/v1/artifacts/acme/cid/aliases/prod", json={"version": c1}, headers=auth)
    assert prod.json() == {"alias": "prod", "version": "1", "moved": True}
    nowhere = httpx.put(f"{server.url}/v1/artifacts/acme/cid/aliases/prod", json={"version": unknown}, headers=auth)
    assert nowhere.status_code == 404 and nowhere.json()["error"]["code"] == "version_not_found"
    verify = httpx.post(f"{server.url}/v1/verify", json={"reference": f"acme/cid@{c2}"}, headers=auth)
    assert verify.status_code == 200 and verify.json()["version"] == "2", verify.text
    # New 40-hex names stay refused; a row that predates that rule still resolves: by its name when it is no
    # commit id, and never in place of the version whose commit id it spells (as on the HF endpoint).
    refused = httpx.post(f"{v1}", headers=auth, json={"version": "a" * 40, "manifest": {"files": [
        {"path": "w.txt", "size": 1, "digest": "sha256:" + "0" * 64}]}})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "reserved_name"
    with MirClient(server.url, server.admin_token) as client:
        _push(client, tmp_path / "3", "acme/cid@3", "three")
        _push(client, tmp_path / "4", "acme/cid@4", "four")
    engine = create_engine(server.database_url)
    with engine.begin() as conn:
        art = conn.execute(text("SELECT id FROM artifacts WHERE namespace = 'acme' AND name = 'cid'")).scalar()
        conn.execute(text("UPDATE versions SET version = :n WHERE artifact_id = :a AND version = '3'"),
                     {"n": "c" * 40, "a": art})
        conn.execute(text("UPDATE versions SET version = :n WHERE artifact_id = :a AND version = '4'"),
                     {"n": c1, "a": art})
    engine.dispose()
    assert httpx.get(f"{v1}/{'c' * 40}", headers=auth).json()["version"] == "c" * 40
    assert httpx.get(f"{v1}/{c1}", headers=auth).json()["version"] == "1"
