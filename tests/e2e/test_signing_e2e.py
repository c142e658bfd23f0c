"""Signing through the registry: trusted keys, signed pushes, countersignatures, `mir verify` locally."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from registry.client.http import MirClient, MirError
from signing.keys import generate_private_key, key_hint, load_public_key, public_key_to_pem
from signing.manifest import Manifest
from signing.sign import sign_manifest
from tests.support.server import LiveServer
from tests.support.trees import model_dir

PASS = {"MIR_TEST_PASSPHRASE": "correct horse battery staple"}


def keygen(server: LiveServer, prefix: Path) -> tuple[Path, Path]:
    server.cli("keygen", "-o", str(prefix), "--passphrase-env", "MIR_TEST_PASSPHRASE", check=True, **PASS)
    return prefix.with_suffix(".pem"), prefix.with_suffix(".pub")


@pytest.fixture
def signed_version(server: LiveServer, tmp_path: Path) -> tuple[str, Path, Path, Path]:
    """A version pushed with --sign by a key the namespace trusts; returns (ref, dir, private, public)."""
    ns = f"sig{tmp_path.name[-6:].replace('_', '').lower()}"
    private, public = keygen(server, tmp_path / "alice")
    server.cli("keys", "add", str(public), "--namespace", ns, "--label", "alice", check=True)
    src = model_dir(tmp_path / "model")
    ref = f"{ns}/bert@1.0"
    server.cli("push", str(src), ref, "--sign", str(private), "--passphrase-env", "MIR_TEST_PASSPHRASE",
               check=True, **PASS)
    return ref, src, private, public


def test_signed_push_verifies_locally(server: LiveServer, signed_version, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, src, _private, public = signed_version
    result = server.cli("verify", ref, str(src), "--key", str(public))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "signed by trusted key" in result.stdout and "countersignature" in result.stdout
    pulled = tmp_path / "pulled"
    server.cli("pull", ref, str(pulled), check=True)
    assert server.cli("verify", ref, str(pulled), "--key", str(public)).returncode == 0
    with MirClient(server.url, server.admin_token) as client:
        origins = sorted(s["origin"] for s in client.signatures(ref))
    assert origins == ["pusher", "registry"]


@pytest.mark.parametrize("tamper", ["modify", "rename", "extra", "missing"])
def test_tampered_local_copy_fails(server: LiveServer, signed_version, tamper: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, src, _private, public = signed_version
    copy = tmp_path / "copy"
    shutil.copytree(src, copy)
    expected = {"modify": "modified", "rename": "renamed", "extra": "extra", "missing": "missing"}[tamper]
    if tamper == "modify":
        data = bytearray((copy / "model.safetensors").read_bytes())
        data[100] ^= 1
        (copy / "model.safetensors").write_bytes(bytes(data))
    elif tamper == "rename":
        (copy / "config.json").rename(copy / "config2.json")
    elif tamper == "extra":
        (copy / "extra.bin").write_bytes(b"smuggled")
    else:
        (copy / "tokenizer" / "vocab.txt").unlink()
    result = server.cli("verify", ref, str(copy), "--key", str(public))
    assert result.returncode == 1
    assert "FAIL files" in result.stdout and expected in result.stdout


def test_wrong_key_and_no_key(server: LiveServer, signed_version, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, src, _private, _public = signed_version
    _, other_pub = keygen(server, tmp_path / "mallory")
    wrong = server.cli("verify", ref, str(src), "--key", str(other_pub))
    assert wrong.returncode == 1 and "FAIL signature" in wrong.stdout
    none = server.cli("verify", ref, str(src))
    assert none.returncode == 1 and "no trusted signer keys" in none.stdout


def test_revoked_key_stops_counting(server: LiveServer, signed_version) -> None:  # type: ignore[no-untyped-def]
    ref, src, _private, public = signed_version
    ns = ref.split("/")[0]
    with MirClient(server.url, server.admin_token) as client:
        kid = client.list_keys(ns)[0]["key_id"]
    server.cli("keys", "revoke", ns, kid, "--reason", "laptop stolen", check=True)
    result = server.cli("verify", ref, str(src), "--key", str(public))
    assert result.returncode == 1 and "revoked" in result.stdout
    listed = server.cli("keys", "list", ns, check=True).stdout
    assert "laptop stolen" in listed
    hint = key_hint(load_public_key(public))
    assert kid in listed and hint in listed and "hint (model-signing)" in listed  # both identifiers of the key
    log = server.cli("audit", "log", f"{ns}/bert").stdout
    assert "version.committed" in log


def test_push_signed_by_untrusted_key_is_refused(server: LiveServer, tmp_path: Path) -> None:
    private, _public = keygen(server, tmp_path / "stranger")
    src = model_dir(tmp_path / "m")
    result = server.cli("push", str(src), "untrusted/bert@1", "--sign", str(private), "--passphrase-env",
                        "MIR_TEST_PASSPHRASE", **PASS)
    assert result.returncode == 1 and "signature_rejected" in result.stderr
    with MirClient(server.url, server.admin_token) as client, pytest.raises(MirError):
        client.show_version("untrusted/bert@1")


def test_key_revoked_between_open_and_commit_blocks_commit(server: LiveServer, tmp_path: Path) -> None:
    key = generate_private_key("ecdsa-p256")
    src = model_dir(tmp_path / "m")
    with MirClient(server.url, server.admin_token) as client:
        kid = client.register_key("racy", public_key_to_pem(key.public_key()).decode(), "racy")["key_id"]
        from signing.hashing import hash_directory

        manifest = hash_directory(src)
        envelope = sign_manifest(manifest, key)
        opened = client.open_version("racy/m@1", manifest, signatures=[envelope.to_dict()])
        for digest in opened["missing"]:
            entry = next(f for f in manifest.files if f.digest == digest)
            client.upload_blob("racy/m@1", digest, src / entry.path)
        client.revoke_key("racy", kid, "compromised mid-push")
        with pytest.raises(MirError) as exc:
            client.commit("racy/m@1")
        assert exc.value.code == "signature_rejected" and "revoked" in exc.value.message


def test_signature_added_later(server: LiveServer, tmp_path: Path) -> None:
    private, public = keygen(server, tmp_path / "bob")
    server.cli("keys", "add", str(public), "--namespace", "later", check=True)
    src = model_dir(tmp_path / "m")
    server.cli("push", str(src), "later/m@1", check=True)
    unsigned = server.cli("verify", "later/m@1", str(src), "--key", str(public))
    assert unsigned.returncode == 1 and "carries no signature" in unsigned.stdout
    (src / "config.json").write_text("changed")
    refused = server.cli("signature", "add", "later/m@1", str(src), "--key", str(private), "--passphrase-env",
                         "MIR_TEST_PASSPHRASE", **PASS)
    assert refused.returncode == 1 and "does not match" in refused.stderr
    server.cli("pull", "later/m@1", str(tmp_path / "good"), check=True)
    server.cli("signature", "add", "later/m@1", str(tmp_path / "good"), "--key", str(private), "--passphrase-env",
               "MIR_TEST_PASSPHRASE", check=True, **PASS)
    assert server.cli("verify", "later/m@1", str(tmp_path / "good"), "--key", str(public)).returncode == 0
    assert "signature.added" in server.cli("audit", "log", "later/m", check=True).stdout


def test_signature_over_another_manifest_and_malformed_envelopes(server: LiveServer, tmp_path: Path) -> None:
    key = generate_private_key("ed25519")
    src = model_dir(tmp_path / "m")
    with MirClient(server.url, server.admin_token) as client:
        client.register_key("forged", public_key_to_pem(key.public_key()).decode())
        client.push(src, "forged/m@1")
        other = Manifest.from_dict({"files": [{"path": "x", "size": 1, "digest": "sha256:" + "0" * 64}]})
        with pytest.raises(MirError) as exc:
            client.add_signature("forged/m@1", sign_manifest(other, key).to_dict())
        assert exc.value.code == "signature_rejected"
        for bad in ({}, {"payload": "!!", "payloadType": "x", "signatures": []}, {"payload": 5}):
            with pytest.raises(MirError) as exc:
                client.add_signature("forged/m@1", bad)
            assert exc.value.code == "invalid_signature"
        with pytest.raises(MirError) as exc:
            client.register_key("forged", "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
        assert exc.value.code == "invalid_key"


def test_pinned_registry_key_mismatch_fails(server: LiveServer, signed_version, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ref, src, _private, public = signed_version
    impostor = tmp_path / "impostor.pem"
    impostor.write_bytes(public_key_to_pem(generate_private_key("ecdsa-p256").public_key()))
    config = tmp_path / "fresh-config"
    pins = config / "registry-keys"
    from hashlib import sha256

    pins.mkdir(parents=True)
    (pins / f"{sha256(server.url.encode()).hexdigest()[:16]}.pem").write_text(impostor.read_text())
    result = server.cli("verify", ref, str(src), "--key", str(public), MIR_CONFIG_DIR=str(config))
    assert result.returncode == 1 and "not the pinned key" in result.stdout + result.stderr
