"""Sign then verify with our own code: the good path and every kind of bad input."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from signing.bundle import BundleFormatError, build_bundle, parse_bundle
from signing.dsse import Envelope, EnvelopeFormatError, Signature, sign_envelope
from signing.hashing import hash_directory
from signing.intoto import parse_statement, statement_from_manifest
from signing.keys import key_hint, key_id
from signing.manifest import Manifest
from signing.sign import sign_directory, sign_manifest, sign_statement
from signing.verify import (
    FailureKind,
    VerificationResult,
    check_directory,
    compare_manifests,
    verify_bundle,
    verify_envelope_for_manifest,
)
from tests.signing.conftest import KeyFiles


def kinds(result: VerificationResult) -> list[tuple[str, str | None]]:
    return [(f.kind.value, f.path) for f in result.failures]


@pytest.fixture
def signed(model_tree: Path, p256: KeyFiles) -> bytes:
    return sign_directory(model_tree, p256.private)


@pytest.mark.parametrize("key_name", ["p256", "p384", "ed25519_key"])
@pytest.mark.parametrize("mode", [{}, {"algorithm": "blake3"}, {"shard_size": 4096}])
def test_good_path(model_tree: Path, key_name: str, mode: dict[str, Any], request: pytest.FixtureRequest) -> None:
    key: KeyFiles = request.getfixturevalue(key_name)
    bundle = sign_directory(model_tree, key.private, workers=2, **mode)
    result = verify_bundle(bundle, model_tree, [key.public], workers=2)
    assert result.ok, result.failures
    assert result.signer_key_ids == (key_id(key.public),)
    assert result.files_checked == 7
    assert result.statement is not None and result.statement.model_name == "model"


def test_tampered_file(model_tree: Path, signed: bytes, p256: KeyFiles) -> None:
    with open(model_tree / "weights.bin", "r+b") as handle:
        handle.seek(1234)
        handle.write(b"\x00")
    result = verify_bundle(signed, model_tree, [p256.public])
    assert not result.ok
    assert kinds(result) == [("modified", "weights.bin")]
    assert "expected sha256:" in result.failures[0].message


def test_renamed_file_is_caught_although_the_subject_digest_is_unchanged(
    model_tree: Path, signed: bytes, p256: KeyFiles
) -> None:
    (model_tree / "config.json").rename(model_tree / "config.json.bak")
    assert sign_directory(model_tree, p256.private) != signed
    resigned = parse_statement(parse_bundle(sign_directory(model_tree, p256.private)).envelope.payload)
    original = parse_statement(parse_bundle(signed).envelope.payload)
    assert resigned.subject_digest == original.subject_digest  # the format's gap...
    result = verify_bundle(signed, model_tree, [p256.public])
    assert kinds(result) == [("renamed", "config.json")]  # ...closed by comparing names
    assert "config.json.bak" in result.failures[0].message


def test_extra_and_missing_files(model_tree: Path, signed: bytes, p256: KeyFiles) -> None:
    (model_tree / "tokenizer" / "merges.txt").write_bytes(b"new file")
    (model_tree / "a.txt").unlink()
    result = verify_bundle(signed, model_tree, [p256.public])
    assert kinds(result) == [("missing", "a.txt"), ("extra", "tokenizer/merges.txt")]


def test_extra_and_missing_empty_files(model_tree: Path, signed: bytes, p256: KeyFiles) -> None:
    (model_tree / "empty.txt").unlink()
    (model_tree / "__init__.py").write_bytes(b"")
    result = verify_bundle(signed, model_tree, [p256.public])
    assert kinds(result) == [("renamed", "empty.txt")]
    sharded = sign_directory(model_tree, p256.private, shard_size=1000)
    (model_tree / "__init__.py").unlink()
    (model_tree / "py.typed").write_bytes(b"")
    (model_tree / "other.typed").write_bytes(b"")
    result = verify_bundle(sharded, model_tree, [p256.public])
    assert kinds(result) == [("renamed", "__init__.py"), ("extra", "py.typed")]


def test_sharded_tampering_names_the_shard(model_tree: Path, p256: KeyFiles) -> None:
    bundle = sign_directory(model_tree, p256.private, shard_size=100_000)
    with open(model_tree / "weights.bin", "r+b") as handle:
        handle.seek(150_000)
        handle.write(b"\x00\x01")
    result = verify_bundle(bundle, model_tree, [p256.public])
    assert kinds(result) == [("modified", "weights.bin")]
    assert "[100000:200000)" in result.failures[0].message


def test_wrong_key(model_tree: Path, signed: bytes, other_p256: KeyFiles) -> None:
    result = verify_bundle(signed, model_tree, [other_p256.public])
    assert kinds(result) == [("untrusted_key", None)]
    assert result.files_checked == 0 and result.statement is None and not result.ok


def test_no_trusted_keys(model_tree: Path, signed: bytes) -> None:
    result = verify_bundle(signed, model_tree, [])
    assert kinds(result) == [("untrusted_key", None)]


@pytest.mark.parametrize("form", ["key_id", "hint", "prefixed"])
def test_revoked_key(model_tree: Path, signed: bytes, p256: KeyFiles, other_p256: KeyFiles, form: str) -> None:
    revoked = {"key_id": key_id(p256.public), "hint": key_hint(p256.public)}.get(form, "sha256:" + key_id(p256.public))
    result = verify_bundle(signed, model_tree, [p256.public, other_p256.public], [revoked.upper()])
    assert kinds(result) == [("revoked_key", None)]
    assert not result.ok and result.files_checked == 0


def test_revoked_key_that_is_not_trusted_is_still_named(model_tree: Path, signed: bytes, p256: KeyFiles) -> None:
    result = verify_bundle(signed, model_tree, [], [key_id(p256.public)])
    assert ("revoked_key", None) in kinds(result)


def test_truncated_bundle(model_tree: Path, signed: bytes, p256: KeyFiles) -> None:
    with pytest.raises(BundleFormatError, match="truncated"):
        verify_bundle(signed[: len(signed) // 2], model_tree, [p256.public])


def rebuilt(bundle: bytes, change: Any) -> bytes:
    data = json.loads(bundle)
    change(data)
    return json.dumps(data).encode()


def test_altered_payload(model_tree: Path, signed: bytes, p256: KeyFiles) -> None:
    def change(data: dict[str, Any]) -> None:
        statement = json.loads(base64.b64decode(data["dsseEnvelope"]["payload"]))
        statement["predicate"]["resources"][0]["digest"] = "0" * 64
        data["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()

    result = verify_bundle(rebuilt(signed, change), model_tree, [p256.public])
    assert kinds(result) == [("bad_signature", None)]
    assert "altered" in result.failures[0].message


def test_altered_signature_and_payload_type(model_tree: Path, signed: bytes, p256: KeyFiles) -> None:
    def flip(data: dict[str, Any]) -> None:
        sig = bytearray(base64.b64decode(data["dsseEnvelope"]["signatures"][0]["sig"]))
        sig[-1] ^= 1
        data["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()

    assert kinds(verify_bundle(rebuilt(signed, flip), model_tree, [p256.public])) == [("bad_signature", None)]
    retyped = rebuilt(signed, lambda d: d["dsseEnvelope"].update(payloadType="application/json"))
    assert kinds(verify_bundle(retyped, model_tree, [p256.public])) == [("bad_signature", None)]


def test_hint_grants_no_trust(model_tree: Path, p256: KeyFiles, other_p256: KeyFiles) -> None:
    """A bundle signed by a stranger that claims a trusted key's hint and id still fails."""
    stranger = sign_directory(model_tree, other_p256.private)

    def claim(data: dict[str, Any]) -> None:
        data["verificationMaterial"]["publicKey"]["hint"] = key_hint(p256.public)
        data["dsseEnvelope"]["signatures"][0]["keyid"] = key_id(p256.public)

    result = verify_bundle(rebuilt(stranger, claim), model_tree, [p256.public])
    assert kinds(result) == [("bad_signature", None)]


def test_unknown_algorithm_in_a_validly_signed_statement(model_tree: Path, p256: KeyFiles) -> None:
    statement = statement_from_manifest(hash_directory(model_tree))
    statement["predicate"]["serialization"]["hash_type"] = "md5"
    for resource in statement["predicate"]["resources"]:
        resource["algorithm"] = "md5"
    bundle = build_bundle(sign_statement(statement, p256.private), p256.public).to_json()
    result = verify_bundle(bundle, model_tree, [p256.public])
    assert kinds(result) == [("unsupported_algorithm", None)]
    assert "md5" in result.failures[0].message and not result.ok


def test_signed_payload_of_another_type(model_tree: Path, p256: KeyFiles) -> None:
    bundle = build_bundle(sign_envelope(b"{}", p256.private, "application/json"), p256.public).to_json()
    assert kinds(verify_bundle(bundle, model_tree, [p256.public])) == [("invalid_statement", None)]


def test_signed_ignore_paths_are_not_trusted_by_default(model_tree: Path, p256: KeyFiles) -> None:
    (model_tree / "README.md").write_bytes(b"# card")
    bundle = sign_directory(model_tree, p256.private, ignore_paths=[".git", "README.md"])
    (model_tree / "README.md").write_bytes(b"# edited card")
    assert kinds(verify_bundle(bundle, model_tree, [p256.public])) == [("extra", "README.md")]
    assert verify_bundle(bundle, model_tree, [p256.public], honor_signed_ignore_paths=True).ok


def test_git_metadata_is_ignored_but_signed_git_files_are_checked(model_tree: Path, p256: KeyFiles) -> None:
    bundle = sign_directory(model_tree, p256.private)
    (model_tree / ".git" / "HEAD").write_bytes(b"changed")
    assert verify_bundle(bundle, model_tree, [p256.public]).ok
    with_attrs = sign_directory(model_tree, p256.private, ignore_paths=[".git"])
    (model_tree / ".gitattributes").write_bytes(b"changed")
    assert kinds(verify_bundle(with_attrs, model_tree, [p256.public])) == [("modified", ".gitattributes")]


def test_bundle_inside_the_directory(model_tree: Path, p256: KeyFiles) -> None:
    bundle = sign_directory(model_tree, p256.private, ignore_paths=[".git", ".gitattributes", "model.sig"])
    (model_tree / "model.sig").write_bytes(bundle)
    assert kinds(verify_bundle(bundle, model_tree, [p256.public])) == [("extra", "model.sig")]
    assert verify_bundle(bundle, model_tree, [p256.public], ignore_paths=[".git", ".gitattributes", "model.sig"]).ok


def test_unsafe_directory_at_verification(model_tree: Path, signed: bytes, p256: KeyFiles, tmp_path: Path) -> None:
    os.symlink(tmp_path, model_tree / "escape")
    result = verify_bundle(signed, model_tree, [p256.public])
    assert kinds(result) == [("unreadable", None)]
    assert "outside the directory" in result.failures[0].message


def test_sign_refuses_empty_directories_and_blake3_shards(tmp_path: Path, model_tree: Path, p256: KeyFiles) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no files"):
        sign_directory(tmp_path / "empty", p256.private)
    with pytest.raises(ValueError, match="only for sha256"):
        sign_directory(model_tree, p256.private, algorithm="blake3", shard_size=10)


# --- envelopes checked against a manifest (the registry's commit-time check) ---


def test_envelope_for_manifest(model_tree: Path, p256: KeyFiles, other_p256: KeyFiles) -> None:
    manifest = hash_directory(model_tree)
    envelope = sign_manifest(manifest, p256.private, model_name="acme/bert")
    result = verify_envelope_for_manifest(envelope.to_json(), manifest, [p256.public])
    assert result.ok and result.statement is not None
    assert result.statement.to_manifest() == manifest
    assert kinds(verify_envelope_for_manifest(envelope, manifest, [other_p256.public])) == [("untrusted_key", None)]


def test_envelope_for_a_renamed_manifest_fails(model_tree: Path, p256: KeyFiles) -> None:
    manifest = hash_directory(model_tree)
    envelope = sign_manifest(manifest, p256.private)
    renamed = Manifest.from_entries(
        [f if f.path != "config.json" else type(f)("config.json.bak", f.size, f.digest) for f in manifest.files]
    )
    result = verify_envelope_for_manifest(envelope, renamed, [p256.public])
    assert kinds(result) == [("renamed", "config.json")]


def test_envelope_for_a_different_manifest(model_tree: Path, p256: KeyFiles) -> None:
    manifest = hash_directory(model_tree)
    envelope = sign_manifest(manifest, p256.private)
    entries = list(manifest.files)
    first = entries[0]
    entries[0] = type(first)(first.path, first.size, "sha256:" + "f" * 64)
    assert kinds(verify_envelope_for_manifest(envelope, Manifest.from_entries(entries), [p256.public])) == [
        ("modified", first.path)
    ]
    entries[0] = type(first)(first.path, first.size + 1, first.digest)
    assert kinds(verify_envelope_for_manifest(envelope, Manifest.from_entries(entries), [p256.public])) == [
        ("modified", first.path)
    ]
    blake = hash_directory(model_tree, "blake3")
    assert kinds(verify_envelope_for_manifest(envelope, blake, [p256.public])) == [("unsupported_algorithm", None)]


def test_sharded_envelope_cannot_vouch_for_a_manifest(model_tree: Path, p256: KeyFiles) -> None:
    bundle = parse_bundle(sign_directory(model_tree, p256.private, shard_size=1000))
    result = verify_envelope_for_manifest(bundle.envelope, hash_directory(model_tree), [p256.public])
    assert kinds(result) == [("unsupported_algorithm", None)]


def test_unparseable_envelope(model_tree: Path, p256: KeyFiles) -> None:
    with pytest.raises(EnvelopeFormatError):
        verify_envelope_for_manifest(b"{", hash_directory(model_tree), [p256.public])
    forged = Envelope(b"{}", "application/vnd.in-toto+json", (Signature(b"\x01" * 64, ""),))
    assert kinds(verify_envelope_for_manifest(forged, hash_directory(model_tree), [p256.public])) == [
        ("untrusted_key", None)
    ]


def test_check_directory_and_compare_manifests(model_tree: Path) -> None:
    manifest = hash_directory(model_tree)
    assert check_directory(model_tree, manifest) == []
    (model_tree / "a.txt").write_bytes(b"beta")
    failures = check_directory(model_tree, manifest, workers=2)
    assert [(f.kind, f.path) for f in failures] == [(FailureKind.MODIFIED, "a.txt")]
    assert "5 bytes" in failures[0].message and "4 bytes" in failures[0].message
    assert compare_manifests(manifest, manifest) == []
    os.symlink("/etc", model_tree / "etc")
    assert [f.kind for f in check_directory(model_tree, manifest)] == [FailureKind.UNREADABLE]
