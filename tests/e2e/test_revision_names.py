"""Names that could shadow something else are refused, through ``/v1``, the CLI and the HF protocol.

A version named ``latest`` or ``main`` would hide the alias of that name for good; a version or alias named like
a commit id (40 hex digits) could make an HF client pinned to a commit receive other bytes; and a short hex
revision that is both a name and another version's commit-id prefix is refused as ambiguous on the HF side.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from registry.client.http import MirClient, MirError
from registry.hf.ids import commit_id
from tests.e2e.test_hf_read import ok, run_hf
from tests.support.server import LiveServer
from tests.support.trees import make_tree


def _tree(root: Path, text: str) -> Path:
    return make_tree(root, {"w.txt": text.encode()})


def _refused(response: httpx.Response, code: str) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


def _open(http: httpx.Client, repo: str, version: str) -> httpx.Response:
    manifest = {"files": [{"path": "w.txt", "size": 1, "digest": "sha256:" + "0" * 64}]}
    return http.post(f"/v1/artifacts/{repo}/versions", json={"version": version, "manifest": manifest})


# -- reserved version names (latest, main) ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["latest", "main"])
def test_latest_and_main_are_not_version_names(http: httpx.Client, name: str) -> None:
    message = _refused(_open(http, f"acme/fresh-{name}", name), "reserved_name")
    assert repr(name) in message and "reserved" in message
    # The refused first push left no artifact behind.
    assert http.get(f"/v1/artifacts/acme/fresh-{name}").status_code == 404


def test_cli_push_to_latest_is_refused_and_latest_still_works(server: LiveServer, tmp_path: Path) -> None:
    first = _tree(tmp_path / "a", "one")
    pushed = server.cli("push", str(first), "acme/reserved@latest")
    assert pushed.returncode != 0
    assert "reserved" in (pushed.stdout + pushed.stderr) and "Traceback" not in pushed.stderr
    server.cli("push", str(first), "acme/reserved@1", check=True)
    with MirClient(server.url, server.admin_token) as client:
        with pytest.raises(MirError) as refused:
            client.push(_tree(tmp_path / "b", "two"), "acme/reserved@main")
        assert refused.value.code == "reserved_name"
        assert client.show_version("acme/reserved@latest")["version"] == "1"
        assert [v["version"] for v in client.show_artifact("acme/reserved")["versions"]] == ["1"]


def test_hf_pushes_to_main_and_latest_never_create_such_versions(server: LiveServer, tmp_path: Path) -> None:
    folder = _tree(tmp_path / "up", "hf")
    results = run_hf(
        server,
        tmp_path / "hf",
        """
        from huggingface_hub import CommitOperationAdd, HfApi
        api = HfApi()
        api.create_repo("acme/hf-reserved", exist_ok=True)
        attempt("main", lambda: api.upload_folder(repo_id="acme/hf-reserved", folder_path=P["folder"],
                                                  revision="main").oid)
        attempt("latest", lambda: api.create_commit("acme/hf-reserved", [CommitOperationAdd("x.txt", b"x")],
                                                    commit_message="x", revision="latest").oid)
        """,
        folder=str(folder),
    )
    ok(results, "main"), ok(results, "latest")
    with MirClient(server.url, server.admin_token) as client:
        names = [v["version"] for v in client.show_artifact("acme/hf-reserved")["versions"]]
    assert len(names) == 2 and all(n.startswith("hf-") for n in names), names


# -- commit-shaped names ---------------------------------------------------------------------------------


def _resolve(http: httpx.Client, repo: str, revision: str) -> httpx.Response:
    return http.get(f"/{repo}/resolve/{revision}/w.txt")


def _commit_of(client: MirClient, reference: str) -> str:
    shown = client.show_version(reference)
    return commit_id(shown["artifact"], shown["version"], shown["manifest_digest"])


def test_a_version_or_alias_cannot_take_a_commit_id(server: LiveServer, http: httpx.Client, tmp_path: Path) -> None:
    with MirClient(server.url, server.admin_token) as client:
        client.push(_tree(tmp_path / "a", "victim"), "acme/shadow@1")
        victim = _commit_of(client, "acme/shadow@1")
        for name in (victim, victim.upper(), "0" * 40, "f" * 40):
            message = _refused(_open(http, "acme/shadow", name), "reserved_name")
            assert "commit id" in message
        with pytest.raises(MirError) as refused:
            client.push(_tree(tmp_path / "b", "attacker"), f"acme/shadow@{'a' * 40}")
        assert refused.value.code == "reserved_name"
        assert _refused(http.put(f"/v1/artifacts/acme/shadow/aliases/{'a' * 40}", json={"version": "1"}),
                        "reserved_name")
        # Shorter or longer hex names and ordinary numeric versions stay valid.
        for name in ("20240101", "1234567", "a" * 39, "a" * 41):
            client.push(_tree(tmp_path / name, name), f"acme/shadow@{name}")
        client.set_alias("acme/shadow", "b" * 39, "1")
    assert _resolve(http, "acme/shadow", victim).content == b"victim"


def test_hf_commit_to_a_commit_shaped_revision_is_refused(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    folder = _tree(tmp_path / "up", "hf")
    results = run_hf(
        server,
        tmp_path / "hf",
        """
        from huggingface_hub import HfApi
        api = HfApi()
        api.create_repo("acme/hf-shaped", exist_ok=True)
        attempt("shaped", lambda: api.upload_folder(repo_id="acme/hf-shaped", folder_path=P["folder"],
                                                    revision="b" * 40).oid)
        """,
        folder=str(folder),
    )
    refused = results["shaped"]
    assert not refused["ok"] and refused["status"] == 400 and "commit id" in refused["message"], refused
    assert http.get("/v1/artifacts/acme/hf-shaped").json()["versions"] == []


def test_short_hex_that_is_a_name_and_a_commit_prefix_is_ambiguous(
    server: LiveServer, http: httpx.Client, tmp_path: Path
) -> None:
    """The attacker names a version (and an alias) after the start of the victim's commit id."""
    with MirClient(server.url, server.admin_token) as client:
        client.push(_tree(tmp_path / "v", "victim"), "acme/prefix@1")
        digest = client.show_version("acme/prefix@1")["manifest_digest"]
        # A victim version whose commit id starts with a letter, so an alias (which starts with one) can copy it.
        lettered = next(f"2.{n}" for n in range(1000) if commit_id("acme/prefix", f"2.{n}", digest)[0] in "abcdef")
        client.push(_tree(tmp_path / "v", "victim"), f"acme/prefix@{lettered}")
        first, second = _commit_of(client, "acme/prefix@1"), _commit_of(client, f"acme/prefix@{lettered}")
        client.push(_tree(tmp_path / "x", "attacker"), f"acme/prefix@{first[:7]}")
        client.push(_tree(tmp_path / "y", "attacker"), "acme/prefix@9")
        client.set_alias("acme/prefix", second[:12], "9")

    for short in (first[:7], second[:12]):
        refused = _resolve(http, "acme/prefix", short)
        assert refused.status_code == 404 and refused.headers["X-Error-Code"] == "RevisionNotFound", refused.text
        assert "ambiguous" in refused.json()["error"]
    # Longer prefixes and full ids still name the victim; names that are no commit prefix still resolve.
    assert _resolve(http, "acme/prefix", first[:8]).content == b"victim"
    assert _resolve(http, "acme/prefix", first).content == b"victim"
    assert _resolve(http, "acme/prefix", second).content == b"victim"
    assert _resolve(http, "acme/prefix", "9").content == b"attacker"
