"""A hostile tenant can neither launder a quarantine by re-pushing its bytes nor learn hidden names from the gate."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.client.http import MirClient, MirError
from signing.hashing import hash_directory
from tests.support.gate import Namespace, safetensors_model, wait_scanned
from tests.support.server import LiveServer, free_port
from tests.support.trees import make_tree

REASON = "PII found: customer SSNs"


def _payload(envelope: dict[str, Any]) -> dict[str, Any]:
    """The signed JSON inside a DSSE envelope, as a verifier decodes it."""
    return dict(json.loads(base64.b64decode(envelope["payload"])))


def _check(answer: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in answer["checks"] if c["check"] == name)


def _offline(ns: Namespace, bundle: Path, directory: Path) -> Any:
    return ns.server.cli("verify", "--offline", "--bundle", str(bundle), str(directory), "--key", str(ns.pub),
                         "--registry-key", str(ns.registry_pub), MIR_URL=f"http://127.0.0.1:{free_port()}")


def test_re_pushing_quarantined_bytes_with_the_copied_signature_stays_quarantined(
    server: LiveServer, tmp_path: Path
) -> None:
    ns = Namespace(server, tmp_path, "evilq")
    src = safetensors_model(tmp_path / "m", seed=11)
    ns.push(src, "evilq/q@1")
    ns.client.quarantine("evilq/q@1", "backdoored")
    token = ns.client.create_token("mallory", ["write:evilq"])["token"]
    with MirClient(server.url, token) as attacker:
        envelope = next(s["envelope"] for s in attacker.signatures("evilq/q@1") if s["origin"] == "pusher")
        for ref in ("evilq/q2@1", "evilq/q@1-hotfix"):
            opened = attacker.open_version(ref, hash_directory(src), signatures=[envelope])
            assert opened["missing"] == []
            attacker.commit(ref)
            wait_scanned(attacker, ref)
            repo, version = ref.split("@")

            answer = attacker.json("POST", "/v1/verify", json={"reference": ref})
            assert answer["decision"] == "deny", answer
            detail = _check(answer, "quarantine")["detail"]
            assert "same content" in detail and "evilq/q@1" in detail and "backdoored" in detail
            assert _payload(answer["receipt"])["decision"] == "deny"
            status = attacker.quarantine_status(ref)
            assert status["status"] == "quarantined"
            assert status["sources"][0]["same_content_as"] == "evilq/q@1"

            with pytest.raises(MirError) as refused:
                attacker.request("GET", f"/v1/artifacts/{repo}/versions/{version}/files/config.json")
            assert refused.value.status == 403 and refused.value.code == "version_quarantined"
            hf = httpx.get(f"{server.url}/{repo}/resolve/{version}/config.json",
                           headers={"Authorization": f"Bearer {token}"})
            assert hf.status_code == 404 and "quarantined" in hf.text

            with pytest.raises(MirError) as aliased:
                attacker.set_alias(repo, "prod", version)
            assert aliased.value.status == 403 and aliased.value.code == "version_quarantined"

            bundle = tmp_path / f"{repo.replace('/', '_')}.bundle.json"
            server.cli("bundle", ref, "-o", str(bundle), token=token, check=True)
            offline = _offline(ns, bundle, src)
            assert offline.returncode == 1 and "FAIL quarantine: " in offline.stdout, offline.stdout

        child = safetensors_model(tmp_path / "child", seed=12)
        attacker.push(child, "evilq/child@1", lineage=[{"type": "fine_tuned_from", "parent": {"ref": "evilq/q2@1"}}])
        wait_scanned(attacker, "evilq/child@1")
        affected = attacker.json("POST", "/v1/verify", json={"reference": "evilq/child@1"})
        assert affected["decision"] == "deny" and "evilq/q@1" in _check(affected, "quarantine")["detail"]
        assert attacker.quarantine_status("evilq/child@1")["status"] == "affected"

    # The same bytes in another namespace are not touched: a quarantine never reaches, or reveals, across tenants.
    ns.client.push(src, "evilq-other/q@1")
    assert ns.client.quarantine_status("evilq-other/q@1")["status"] != "quarantined"
    # Lifting the quarantine frees its copies too; quarantining again records which copies it covers.
    ns.client.unquarantine("evilq/q@1", "false alarm")
    assert ns.client.json("POST", "/v1/verify", json={"reference": "evilq/q2@1"})["decision"] == "allow"
    ns.client.quarantine("evilq/q@1", "backdoored after all")
    entries = ns.client.json("GET", "/v1/audit/entries",
                             params={"artifact": "evilq/q", "action": "version.quarantined"})["items"]
    assert entries[-1]["details"]["same_content_versions"] == ["evilq/q2@1", "evilq/q@1-hotfix"]


def test_verify_and_bundles_hide_what_the_caller_cannot_read(server: LiveServer, tmp_path: Path) -> None:
    with MirClient(server.url, server.admin_token) as admin:
        admin.push(make_tree(tmp_path / "corpus", {"data.jsonl": b'{"text": "x"}\n'}), "victim/corpus@1",
                   kind="dataset")
        admin.push(safetensors_model(tmp_path / "bert", seed=21), "victim/bert@2.0.0")
        admin.quarantine("victim/corpus@1", REASON)
        admin.push(safetensors_model(tmp_path / "derived", seed=22), "other/derived@1", lineage=[
            {"type": "trained_on", "parent": {"ref": "victim/corpus@1"}},
            {"type": "fine_tuned_from", "parent": {"ref": "victim/bert@2.0.0"}},
        ])
        wait_scanned(admin, "other/derived@1")
        reader = admin.create_token("other-reader", ["read:other"])["token"]
        seen = admin.json("POST", "/v1/verify", json={"reference": "other/derived@1"})
    assert seen["decision"] == "deny" and "victim/corpus@1" in json.dumps(seen) and REASON in json.dumps(seen)

    with MirClient(server.url, reader) as client:
        answer = client.json("POST", "/v1/verify", json={"reference": "other/derived@1"})
        bundle = client.json("GET", "/v1/artifacts/other/derived/versions/1/bundle")
    receipt = _payload(answer["receipt"])
    attestation = _payload(bundle["attestation"])
    assert answer["decision"] == "deny" and receipt["decision"] == "deny"
    assert "a quarantined version you cannot read" in _check(answer, "quarantine")["detail"]
    assert attestation["quarantine"]["status"] == "affected"
    for shown in (answer, receipt, bundle, attestation):
        text = json.dumps(shown)
        for secret in ("victim", "SSN", "PII"):
            assert secret not in text, (secret, text)


def test_quarantine_audit_entry_names_only_the_namespaces_own_aliases(server: LiveServer, tmp_path: Path) -> None:
    with MirClient(server.url, server.admin_token) as admin:
        admin.push(make_tree(tmp_path / "base", {"w.bin": b"base weights"}), "victim5/base@1")
        admin.set_alias("victim5/base", "stable", "1")
        admin.push(make_tree(tmp_path / "own", {"w.bin": b"own child"}), "victim5/tuned@1",
                   lineage=[{"type": "fine_tuned_from", "parent": {"ref": "victim5/base@1"}}])
        admin.set_alias("victim5/tuned", "prod", "1")
        admin.push(make_tree(tmp_path / "theirs", {"w.bin": b"their child"}), "tenant5/secret-ft@1",
                   lineage=[{"type": "fine_tuned_from", "parent": {"ref": "victim5/base@1"}}])
        admin.set_alias("tenant5/secret-ft", "prod", "1")
        admin.quarantine("victim5/base@1", "poisoned")
        entries = admin.json("GET", "/v1/audit/entries",
                             params={"artifact": "victim5/base", "action": "version.quarantined"})["items"]
    (details,) = [e["details"] for e in entries]
    assert {"victim5/base@stable", "victim5/tuned@prod"} <= set(details["affected_aliases"])
    assert all(alias.startswith("victim5/") for alias in details["affected_aliases"])
    assert details["affected_versions"] == 2
    assert details["affected_versions_elsewhere"] == 1
    assert details["affected_aliases_elsewhere"] == 2  # tenant5/secret-ft's prod and latest
    assert "tenant5" not in json.dumps(details)

