"""A hostile tenant (an ordinary ``read:`` or ``write:`` token) or an anonymous visitor attacks the web interface,
``/metrics`` and the lineage, audit and synthetic views the interface shows.

- An external source (a private dataset URL, a Hub repo) that only a version of another namespace names was
  shown in full to a reader of a namespace whose version descends from that version: the walk hid the version
  (``hidden:<id>``) but not what it was trained on, in the lineage graph of ``/ui`` (``lineage.json``), in
  ``/v1/.../lineage`` and in both exports. Such a source is now a hidden node of its own, one per edge. The
  synthetic-data summary (``/v1/.../synthetic``, the version, what ``/v1/verify`` and bundles attest) named them
  too, in the notes its mix of a hidden parent carried up; they are now labelled like hidden versions.
- An edge added after the push to a parent in another namespace was audited with the parent's name and the
  edge's attributes, in the child's history, which every reader of the child reads (``/ui/audit``,
  ``/v1/audit/entries``). Such an entry now carries a digest of both, as ``lineage.declared`` does.
- ``/metrics`` labelled requests by the raw HTTP method: an anonymous visitor sending PROPFIND, MKCALENDAR,
  PURGE, ... (the ~40 methods uvicorn's parser accepts; any token under h11) to every route minted a counter
  and a histogram per method and route. Methods we do not serve are now counted as ``other``.
- With registry-wide synthetic matching, a dataset over its namespace's synthetic limit was audited
  (``synthetic.limit_exceeded``) with a reason naming the generators its records matched, whatever namespace
  they live in: every reader of the dataset read another tenant's generator names in ``/ui/audit``. The reason
  is now written in the dataset's own namespace's view. A generated dataset whose record parent in another
  namespace could not be read failed its analysis with an error naming that parent; it now says ``hidden:<id>``.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from registry.client.http import MirClient
from tests.e2e.test_synthetic_e2e import edge, model_dir, sentences, wait_scanned, write_jsonl
from tests.support.databases import BACKENDS, database_url
from tests.support.server import LiveServer, live_server
from tests.support.trees import make_tree

PRIVATE_URL = "https://internal.example/atkc-private-corpus"
PRIVATE_HF = "atkc-org/private-instructions"
HF_SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def reader(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """atkc2/secret (trained on a private URL and a private Hub dataset) -> atkc1/child; a read:atkc1 token."""
    tmp = tmp_path_factory.mktemp("atkc")
    with MirClient(server.url, server.admin_token) as admin:
        private = [
            {"type": "trained_on", "parent": {"external": {"kind": "url", "url": PRIVATE_URL,
                                                           "digest": "sha256:" + "cd" * 32}}},
            {"type": "fine_tuned_from", "parent": {"external": {"kind": "huggingface", "repo": PRIVATE_HF,
                                                                "revision": HF_SHA, "repo_type": "dataset"}}},
        ]
        admin.push(make_tree(tmp / "s", {"w.txt": b"secret"}), "atkc2/secret@1", lineage=private)
        public = [{"type": "evaluated_on", "parent": {"external": {"kind": "url", "url": "https://public.example/x",
                                                                   "digest": "sha256:" + "ef" * 32}}}]
        admin.push(make_tree(tmp / "c", {"w.txt": b"child"}), "atkc1/child@1",
                   lineage=[{"type": "derived_from", "parent": {"ref": "atkc2/secret@1"}}, *public])
        admin.push(make_tree(tmp / "o", {"w.txt": b"own"}), "atkc1/own@1")
        sources = [{"type": t, "parent": {"external": {"kind": "url", "url": f"{PRIVATE_URL}/{i}",
                                                       "digest": "sha256:" + str(i) * 64}}}
                   for i, t in ((1, "derived_from"), (2, "derived_from"), (3, "generated_by"))]
        admin.push(make_tree(tmp / "d", {"d.jsonl": b'{"text": "a"}\n'}), "atkc2/data@1", kind="dataset",
                   lineage=sources)
        admin.push(make_tree(tmp / "m", {"w.txt": b"model"}), "atkc1/model@1",
                   lineage=[{"type": "trained_on", "parent": {"ref": "atkc2/data@1"}}, *public])
        admin.push(make_tree(tmp / "l", {"w.txt": b"later"}), "atkc1/later@1")
        admin.add_lineage("atkc1/later@1", "evaluated_on", {"ref": "atkc2/secret@1"},
                          attributes={"split": "atkc2-holdout"})
        admin.add_lineage("atkc1/later@1", "derived_from", {"ref": "atkc1/own@1"}, attributes={"step": 3})
        return str(admin.create_token("atkc1-reader", ["read:atkc1"])["token"])


def test_a_hidden_versions_external_sources_stay_hidden(server: LiveServer, reader: str) -> None:
    base = "/artifacts/atkc1/child/versions/1"
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {reader}"}, timeout=60) as tenant:
        graph = tenant.get(f"/ui{base}/lineage.json", params={"depth": 3})
        walk = tenant.get(f"/v1{base}/lineage", params={"direction": "up", "depth": 3})
        exports = [tenant.get(f"/v1{base}/lineage/export", params={"format": f}) for f in ("prov", "openlineage")]
        pages = [tenant.get(f"/ui{base}"), tenant.get(f"/ui{base}/lineage")]
    for answer in (graph, walk, *exports, *pages):
        assert answer.status_code == 200, answer.text
        for secret in ("internal.example", "atkc-private-corpus", PRIVATE_HF, "atkc2"):
            assert secret not in answer.text, (answer.request.url, secret)
    assert "public.example" in walk.text and "public.example" in graph.text  # the child's own source shows
    edges = walk.json()["edges"]
    behind = [e for e in edges if e["child"].startswith("hidden:")]
    assert len(behind) == 2 and all(e["parent"].startswith("hidden:") and e["attributes"] == {} for e in behind)
    assert len({e["parent"] for e in behind}) == 2  # one hidden node per edge: nothing says two share a source
    assert all(walk.json()["nodes"][e["parent"]] == {"type": "hidden"} for e in behind)
    assert all(graph.json()["nodes"][e["parent"]] == {"type": "hidden"} for e in behind)

    with MirClient(server.url, server.admin_token) as admin:  # whoever may read atkc2 still sees everything
        full = admin.json("GET", f"/v1{base}/lineage", params={"direction": "up", "depth": 3})
        notes = admin.json("GET", "/v1/artifacts/atkc1/model/versions/1/synthetic")["lineage"]["notes"]
    assert PRIVATE_URL in str(full) and PRIVATE_HF in str(full)
    assert PRIVATE_URL in str(notes)


def test_a_hidden_versions_sources_stay_out_of_the_synthetic_summary(server: LiveServer, reader: str) -> None:
    base = "/artifacts/atkc1/model/versions/1"
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {reader}"}, timeout=60) as tenant:
        answers = [tenant.get(f"/v1{base}/synthetic"), tenant.get(f"/v1{base}"), tenant.get(f"/ui{base}")]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert "internal.example" not in answer.text and "atkc2" not in answer.text, answer.request.url
    lineage = answers[0].json()["lineage"]
    assert lineage["synthetic_fraction"] == 1.0  # the hidden parent's generated data still counts
    assert any("hidden:source-" in note for note in lineage["notes"])


def test_an_edge_added_to_another_namespace_is_audited_without_its_name(server: LiveServer, reader: str) -> None:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {reader}"}, timeout=60) as tenant:
        page = tenant.get("/ui/audit", params={"artifact": "atkc1/later"})
        api = tenant.get("/v1/audit/entries", params={"artifact": "atkc1/later"})
    assert page.status_code == 200 and api.status_code == 200, (page.text, api.text)
    for answer in (page, api):
        assert "atkc2" not in answer.text and "holdout" not in answer.text
    added = [e["details"] for e in api.json()["items"] if e["action"] == "lineage.edge_added"]
    assert len(added) == 2
    elsewhere, own = added
    assert elsewhere["parent_elsewhere"] is True and elsewhere["edge_digest"].startswith("sha256:")
    assert "parent" not in elsewhere and "attributes" not in elsewhere
    assert own["parent"] == "atkc1/own@1" and own["attributes"] == {"step": 3}  # this namespace's own: named


def test_odd_http_methods_mint_no_metric_labels(server: LiveServer) -> None:
    odd = ("PROPFIND", "MKCALENDAR", "PURGE", "SOURCE", "LINK")
    for method in odd:
        for path in ("/v1/health", "/ui/login", "/nowhere"):
            assert httpx.request(method, server.url + path, timeout=30).status_code in (400, 404, 405)
    scraped = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {server.admin_token}"},
                        timeout=30)
    assert scraped.status_code == 200
    assert not [m for m in odd if f'method="{m}"' in scraped.text]
    assert 'mir_http_requests_total{method="other",route="/v1/health",status="405"} 5.0' in scraped.text


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_synthetic_limit_is_audited_without_another_tenants_generators(backend: str, tmp_path: Path) -> None:
    generated = sentences(41, 30)
    env = {"MIR_SYNTHETIC_MATCH_SCOPE": "registry"}
    with database_url(backend, tmp_path) as url, live_server(url, tmp_path, env=env) as live:
        with MirClient(live.url, live.admin_token) as admin:
            admin.push(model_dir(tmp_path / "gm", 9), "atkcgen/secret-generator@1")
            admin.push(write_jsonl(tmp_path / "gen", generated), "atkcgen/gen-data@1", kind="dataset",
                       lineage=[edge("generated_by", "atkcgen/secret-generator@1")])
            wait_scanned(admin, "atkcgen/gen-data@1")
            admin.json("PUT", "/v1/namespaces/atkccopy/policy", json={"max_synthetic_fraction": 0.3})
            copier = admin.create_token("atkc-copier", ["write:atkccopy"])["token"]
        with MirClient(live.url, copier) as client:
            client.push(write_jsonl(tmp_path / "copy", generated[:20] + sentences(42, 10)), "atkccopy/copy@1",
                        kind="dataset")
            assert wait_scanned(client, "atkccopy/copy@1")["scan_status"] == "suspicious"
            entries = client.json("GET", "/v1/audit/entries", params={"artifact": "atkccopy/copy"})["items"]
        with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {copier}"}, timeout=60) as tenant:
            page = tenant.get("/ui/audit", params={"artifact": "atkccopy/copy"})
    exceeded = [e for e in entries if e["action"] == "synthetic.limit_exceeded"]
    assert len(exceeded) == 1 and "over the limit" in exceeded[0]["details"]["reason"]
    assert "generators: hidden" in exceeded[0]["details"]["reason"]
    assert page.status_code == 200 and "synthetic.limit_exceeded" in page.text
    assert "atkcgen" not in json.dumps(entries) and "atkcgen" not in page.text


def test_an_unreadable_parent_in_another_namespace_is_not_named(server: LiveServer, tmp_path: Path,
                                                                  reader: str) -> None:
    with MirClient(server.url, server.admin_token) as admin:
        unreadable = make_tree(tmp_path / "raw", {"data.jsonl": b'{"text": "ok"}\n\xff\xfe\n'})  # bad UTF-8
        admin.push(unreadable, "atkc2/raw@1", kind="dataset")
        admin.push(model_dir(tmp_path / "gm", 3), "atkc1/gm@1")
        admin.push(write_jsonl(tmp_path / "gen", sentences(43, 10)), "atkc1/gen@1", kind="dataset",
                   lineage=[edge("generated_by", "atkc1/gm@1"), edge("derived_from", "atkc2/raw@1")])
        wait_scanned(admin, "atkc1/gen@1")
    with MirClient(server.url, reader) as tenant:
        answers = [tenant.json("GET", "/v1/artifacts/atkc1/gen/versions/1/synthetic"),
                   tenant.json("GET", "/v1/artifacts/atkc1/gen/versions/1/scans"), tenant.show_version("atkc1/gen@1")]
    fingerprint = answers[0]["fingerprint"]
    assert fingerprint["status"] == "error" and "parent dataset hidden:" in fingerprint["error"]
    assert "atkc2" not in json.dumps(answers)
