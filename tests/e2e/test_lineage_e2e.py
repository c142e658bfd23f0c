"""Lineage and quarantine through the real server, the real `mir` CLI and the Python client."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prov.model import ProvDocument
from typer.testing import CliRunner, Result

from registry.cli.main import app as cli_app
from registry.client.http import MirClient, MirError
from tests.support.server import LiveServer
from tests.support.trees import make_tree

HF_SHA = "89abcdef0123456789abcdef0123456789abcdef"
DIGEST = "sha256:" + "cd" * 32


def tree(tmp_path: Path, name: str) -> Path:
    return make_tree(tmp_path / name, {"data.bin": name.encode() * 100, "README.md": b"# " + name.encode()})


def token_for(server: LiveServer, *scopes: str) -> str:
    with MirClient(server.url, server.admin_token) as client:
        return str(client.create_token(f"t-{'-'.join(scopes)}".replace(":", "_"), list(scopes))["token"])


def mir(server: LiveServer, *args: str, token: str | None = None) -> Result:
    """The real `mir` app in this process (no interpreter start-up), against the real server.

    The slow path, ``server.cli`` (a subprocess), covers each flow a user depends on; this one covers the
    output variants, which differ only in rendering.
    """
    env = {"MIR_URL": server.url, "MIR_TOKEN": token or server.admin_token, "MIR_CONFIG_DIR": str(server.config_dir)}
    return CliRunner().invoke(cli_app, list(args), env=env)


def api(server: LiveServer, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or server.admin_token}"}
    return httpx.request(method, f"{server.url}{path}", headers=headers, timeout=30, **kwargs)


def test_push_with_lineage_then_walk_in_every_format(server: LiveServer, tmp_path: Path) -> None:
    with MirClient(server.url, server.admin_token) as client:
        client.push(tree(tmp_path, "corpus"), "lin/corpus@1", kind="dataset")
    edges = tmp_path / "edges.json"
    edges.write_text(json.dumps([
        {"type": "trained_on", "parent": "lin/corpus@latest",
         "attributes": {"split": "train", "mixture_fraction": 0.9}},
        {"type": "trained_on", "parent": {"external": {"kind": "url", "url": "https://x.example/web.tar",
                                                       "digest": DIGEST}}, "attributes": {"mixture_fraction": 0.1}},
    ]))
    pushed = server.cli("push", str(tree(tmp_path, "model")), "lin/model@1", "--lineage", str(edges),
                        "--parent", f"fine_tuned_from:hf:org/base@{HF_SHA}", check=True)
    assert "committed lin/model@1" in pushed.stdout
    assert mir(server, "push", str(tree(tmp_path, "quant")), "lin/model-q4@1", "-p",
               "quantized_from:lin/model@1").exit_code == 0

    shown = json.loads(mir(server, "show", "lin/model@1", "--json").stdout)
    assert [e["parent"] for e in shown["lineage"]] == [
        "lin/corpus@1", f"https://x.example/web.tar#{DIGEST}", f"hf://org/base@{HF_SHA}"]
    assert shown["lineage"][0]["attributes"] == {"split": "train", "mixture_fraction": 0.9}
    assert shown["quarantine"] is None

    walked = server.cli("lineage", "lin/model-q4@1", check=True).stdout
    for expected in ("lin/model-q4@1", "quantized_from", "lin/model@1", "trained_on", "lin/corpus@1",
                     "mixture_fraction=0.9", f"hf://org/base@{HF_SHA}"):
        assert expected in walked, (expected, walked)
    as_json = json.loads(mir(server, "lineage", "lin/model-q4@1", "--format", "json").stdout)
    assert as_json["root"] == "lin/model-q4@1" and len(as_json["edges"]) == 4
    assert {e["depth"] for e in as_json["edges"]} == {1, 2}
    shallow = json.loads(mir(server, "lineage", "lin/model-q4@1", "--depth", "1", "--format", "json").stdout)
    assert [e["parent"] for e in shallow["edges"]] == ["lin/model@1"]
    dot = mir(server, "lineage", "lin/model-q4@1", "--format", "dot").stdout
    assert dot.startswith("digraph lineage {") and '"lin/model@1" -> "lin/corpus@1"' in dot
    down = mir(server, "lineage", "lin/corpus@1", "--down").stdout
    assert "lin/model@1" in down and "lin/model-q4@1" in down
    path = mir(server, "lineage", "lin/model-q4@1", "--path-to", "lin/corpus@1").stdout
    assert "quantized_from" in path and "trained_on" in path
    assert mir(server, "alias", "set", "lin/model-q4@1", "prod").exit_code == 0
    impact = mir(server, "lineage", "lin/corpus@1", "--impact").stdout
    assert "2 version(s) descend" in impact and "lin/model-q4@prod" in impact

    with MirClient(server.url, server.admin_token) as client:
        page = client.lineage_page("lin/model-q4@1", limit=1)
        assert len(page["edges"]) == 1 and page["next"]
        assert len(client.lineage("lin/model-q4@1")["edges"]) == 4

    prov = json.loads(mir(server, "lineage", "lin/model-q4@1", "--export", "prov").stdout)
    for key in ("prefix", "entity", "activity", "agent", "used", "wasGeneratedBy", "wasDerivedFrom",
                "wasAssociatedWith", "wasAttributedTo"):
        assert prov.get(key), key
    assert ProvDocument.deserialize(content=json.dumps(prov), format="json").get_records()
    lines = mir(server, "lineage", "lin/model-q4@1", "--export", "openlineage").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert {e["job"]["name"] for e in events} == {"lin/model-q4@1", "lin/model@1"}
    for event in events:
        assert {"eventType", "eventTime", "run", "job", "inputs", "outputs", "producer", "schemaURL"} <= set(event)
        assert event["run"]["runId"] and event["outputs"][0]["namespace"] == server.url

    # --down exports the descendants, not only the root
    below = server.cli("lineage", "lin/corpus@1", "--down", "--export", "openlineage", check=True).stdout
    down_events = [json.loads(line) for line in below.splitlines()]
    assert {e["job"]["name"] for e in down_events} == {"lin/corpus@1", "lin/model@1", "lin/model-q4@1"}
    by_job = {e["job"]["name"]: e for e in down_events}
    assert [i["name"] for i in by_job["lin/model-q4@1"]["inputs"]] == ["lin/model@1"]
    assert [i["name"] for i in by_job["lin/model@1"]["inputs"]] == ["lin/corpus@1"]  # only edges of the walk
    prov_down = json.loads(mir(server, "lineage", "lin/corpus@1", "--down", "--export", "prov").stdout)
    labels = {e.get("prov:label") for e in prov_down["entity"].values()}
    assert {"lin/corpus@1", "lin/model@1", "lin/model-q4@1"} <= labels
    assert len(prov_down["wasDerivedFrom"]) == 2


def test_quarantine_refuses_pull_and_warns_descendants(server: LiveServer, tmp_path: Path) -> None:
    with MirClient(server.url, server.admin_token) as client:
        client.push(tree(tmp_path, "qdata"), "qq/data@1", kind="dataset")
        client.push(tree(tmp_path, "qmodel"), "qq/model@1", lineage=[
            {"type": "trained_on", "parent": {"ref": "qq/data@1"}}])
        client.set_alias("qq/model", "prod", "1")
    writer = token_for(server, "write:qq")

    refused = mir(server, "quarantine", "qq/data@1", "--reason", "PII leak", token=writer)
    assert refused.exit_code == 1 and "forbidden" in refused.stderr
    done = server.cli("quarantine", "qq/data@1", "--reason", "PII leak", check=True).stdout
    assert "quarantined qq/data@1" in done and "1 descendant" in done and "qq/model@prod" in done

    pulled = server.cli("pull", "qq/data@1", str(tmp_path / "out-data"))
    assert pulled.returncode == 1
    assert "quarantined" in pulled.stderr and "PII leak" in pulled.stderr and "version_quarantined" in pulled.stderr
    assert not (tmp_path / "out-data" / "data.bin").exists()
    direct = api(server, "GET", "/v1/artifacts/qq/data/versions/1/files/data.bin")
    assert direct.status_code == 403 and direct.json()["error"]["code"] == "version_quarantined"

    affected = server.cli("pull", "qq/model@prod", str(tmp_path / "out-model"), token=writer)
    assert affected.returncode == 0 and (tmp_path / "out-model" / "data.bin").exists()
    assert "affected" in affected.stderr and "qq/data@1" in affected.stderr and "PII leak" in affected.stderr
    served = api(server, "GET", "/v1/artifacts/qq/model/versions/1/files/data.bin", token=writer)
    assert served.status_code == 200 and served.headers["X-Mir-Quarantine"] == "affected"
    shown = api(server, "GET", "/v1/artifacts/qq/model/versions/prod", token=writer).json()
    assert shown["quarantine"]["status"] == "affected"

    not_admin = mir(server, "pull", "qq/data@1", str(tmp_path / "o2"), "--override-quarantine", token=writer)
    assert not_admin.exit_code == 1 and "admin" in not_admin.stderr
    overridden = server.cli("pull", "qq/data@1", str(tmp_path / "o3"), "--override-quarantine")
    assert overridden.returncode == 0 and "QUARANTINED" in overridden.stderr
    assert (tmp_path / "o3" / "data.bin").exists()
    entries = api(server, "GET", "/v1/audit/entries", params={"action": "version.quarantine_override"}).json()
    assert [(e["artifact"], e["actor"]) for e in entries["items"]][:1] == [("qq/data", "admin")]
    assert len(entries["items"]) == 2  # one per file served

    listed = mir(server, "quarantines").stdout
    assert "qq/data@1" in listed and "PII leak" in listed
    assert mir(server, "unquarantine", "qq/data@1", "--reason", "scrubbed", token=writer).exit_code == 1
    assert mir(server, "unquarantine", "qq/data@1", "--reason", "scrubbed").exit_code == 0
    clean = mir(server, "pull", "qq/model@1", str(tmp_path / "o4"))
    assert clean.exit_code == 0 and "warning" not in clean.stderr
    actions = {e["action"] for e in api(server, "GET", "/v1/audit/entries",
                                        params={"artifact": "qq/data", "limit": 1000}).json()["items"]}
    assert {"version.quarantined", "version.unquarantined", "version.quarantine_override"} <= actions


def test_bad_lineage_input_gets_clear_4xx(server: LiveServer, tmp_path: Path) -> None:
    with MirClient(server.url, server.admin_token) as admin:
        admin.push(tree(tmp_path, "a"), "bad/a@1")
        admin.push(tree(tmp_path, "b"), "bad/b@1", lineage=[{"type": "derived_from", "parent": {"ref": "bad/a@1"}}])
        admin.push(tree(tmp_path, "s"), "secret/s@1")
    writer = token_for(server, "write:bad")
    manifest = {"files": [{"path": "w.bin", "size": 1, "digest": "sha256:" + "0" * 64}]}  # empty ones are refused
    opens: list[tuple[Any, int, str]] = [
        ([{"type": "inspired_by", "parent": {"ref": "bad/a@1"}}], 400, "invalid_lineage"),
        ([{"type": "trained_on", "parent": {"ref": "bad/a"}}], 400, "invalid_lineage"),
        ([{"type": "trained_on", "parent": {"ref": "bad/zzz@1"}}], 404, "lineage_parent_not_found"),
        ([{"type": "trained_on", "parent": {"ref": "secret/s@1"}}], 403, "forbidden"),
        ([{"type": "trained_on", "parent": {"ref": "bad/new@1"}}], 400, "lineage_self_edge"),
        ([{"type": "trained_on", "parent": {"ref": "bad/a@1"}, "attributes": {"blob": "x" * 5000}}], 400,
         "invalid_lineage"),
        ("not a list", 422, "invalid_request"),
    ]
    for lineage, status, code in opens:
        body = {"version": "1", "manifest": manifest, "lineage": lineage}
        response = api(server, "POST", "/v1/artifacts/bad/new/versions", token=writer, json=body)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
        assert response.json()["error"]["message"]
    adds: list[tuple[str, Any, int, str]] = [
        ("a", {"type": "derived_from", "parent": {"ref": "bad/b@1"}}, 409, "lineage_cycle"),
        ("a", {"type": "derived_from", "parent": {"ref": "bad/a@1"}}, 400, "lineage_self_edge"),
        ("b", {"type": "derived_from", "parent": {"ref": "bad/a@1"}}, 409, "edge_exists"),
        ("b", {"type": "nope", "parent": {"ref": "bad/a@1"}}, 400, "invalid_lineage"),
        ("b", {"type": "derived_from", "parent": {"ref": "secret/s@1"}}, 403, "forbidden"),
        ("b", [1, 2], 422, "invalid_request"),
        ("zzz", {"type": "derived_from", "parent": {"ref": "bad/a@1"}}, 404, "artifact_not_found"),
    ]
    for child, body, status, code in adds:
        response = api(server, "POST", f"/v1/artifacts/bad/{child}/versions/1/lineage", token=writer, json=body)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.text
    reader = token_for(server, "read:bad")
    response = api(server, "POST", "/v1/artifacts/bad/b/versions/1/lineage", token=reader,
                   json={"type": "evaluated_on", "parent": {"ref": "bad/a@1"}})
    assert response.status_code == 403
    for path, params in (("/lineage", {"depth": 0}), ("/lineage", {"direction": "sideways"}),
                         ("/lineage", {"cursor": "x"}), ("/lineage/path", {"to": "not a ref"}),
                         ("/lineage/export", {"format": "rdf"})):
        response = api(server, "GET", f"/v1/artifacts/bad/b/versions/1{path}", params=params)
        assert 400 <= response.status_code < 500 and response.json()["error"]["message"], (path, response.text)
    response = api(server, "POST", "/v1/artifacts/bad/a/versions/1/quarantine", token=writer, json={"reason": "x"})
    assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")
    response = api(server, "POST", "/v1/artifacts/bad/a/versions/1/quarantine", json={"reason": " "})
    assert response.status_code == 422

    added = mir(server, "lineage-add", "bad/b@1", "evaluated_on", f"hf:datasets/org/eval@{HF_SHA}",
                "--attr", "split=test", "--attr", "record_count=500", token=writer)
    assert added.exit_code == 0, added.output
    with MirClient(server.url, writer) as client:
        parents = client.show_version("bad/b@1")["lineage"]
        assert parents[-1]["attributes"] == {"split": "test", "record_count": 500} and not parents[-1]["at_push"]
        with pytest.raises(MirError) as exc:
            client.add_lineage("bad/a@1", "derived_from", "bad/b@1")
        assert exc.value.code == "lineage_cycle"
    cli_bad = mir(server, "push", str(tmp_path / "a"), "bad/c@1", "--parent", "trained-on:bad/a@1")
    assert cli_bad.exit_code == 2 and "TYPE:PARENT" in cli_bad.stderr
    cli_missing = mir(server, "push", str(tmp_path / "a"), "bad/c@1", "--parent", "trained_on:bad/a@404")
    assert cli_missing.exit_code == 1 and "lineage_parent_not_found" in cli_missing.stderr
    assert mir(server, "lineage", "bad/b@1", "--format", "svg").exit_code == 2
    assert mir(server, "lineage", "bad/zzz@1").exit_code == 1
