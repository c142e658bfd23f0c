"""Interoperability with the real OpenSSF model-signing 1.1.1, both directions.

Our bundles must verify with ``model_signing verify key`` (its CLI) and its
Python API; bundles from ``model_signing sign key`` must verify with ours, and
tampering with either must fail in both tools.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import model_signing
import pytest

from signing.keys import key_id
from signing.sign import sign_directory
from signing.verify import verify_bundle
from tests.signing.conftest import MODEL_SIGNING_CLI, PASSPHRASE, KeyFiles

OURS_IGNORE = [".git", ".gitattributes", ".github", ".gitignore", "model.sig"]


def ms_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MODEL_SIGNING_CLI), *map(str, args)], capture_output=True, text=True, timeout=120)


def ms_verify_api(model: Path, bundle: Path, public_key: Path) -> None:
    """model-signing's Python API, letting it read the hashing configuration from the signature."""
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public_key).verify(model, bundle)


def ms_sign_api(model: Path, bundle: Path, key: KeyFiles, config: model_signing.hashing.Config) -> None:
    # model-signing 1.1.1 passes the password to cryptography unchanged, so it must be bytes.
    password: str = PASSPHRASE.encode()  # type: ignore[assignment]
    signer = model_signing.signing.Config().use_elliptic_key_signer(private_key=key.private_path, password=password)
    signer.set_hashing_config(config).sign(model, bundle)


# --- ours -> model-signing ---


@pytest.mark.parametrize("key_name", ["p256", "p384"])
def test_model_signing_cli_verifies_our_bundle(
    model_tree: Path, tmp_path: Path, key_name: str, request: pytest.FixtureRequest
) -> None:
    key: KeyFiles = request.getfixturevalue(key_name)
    bundle = tmp_path / "ours.sig"
    bundle.write_bytes(sign_directory(model_tree, key.private))
    result = ms_cli("verify", "key", "--public_key", key.public_path, "--signature", bundle, model_tree)
    assert result.returncode == 0, result.stderr
    assert "Verification succeeded" in result.stdout
    (model_tree / "a.txt").write_bytes(b"tampered")
    result = ms_cli("verify", "key", "--public_key", key.public_path, "--signature", bundle, model_tree)
    assert result.returncode == 1
    assert "a.txt" in result.stderr


@pytest.mark.parametrize("mode", [{"algorithm": "blake3"}, {"shard_size": 50_000}])
def test_model_signing_api_verifies_our_blake3_and_sharded_bundles(
    model_tree: Path, tmp_path: Path, p256: KeyFiles, mode: dict[str, object]
) -> None:
    bundle = tmp_path / "ours.sig"
    bundle.write_bytes(sign_directory(model_tree, p256.private, **mode))  # type: ignore[arg-type]
    ms_verify_api(model_tree, bundle, p256.public_path)
    (model_tree / "weights.bin").write_bytes(b"tampered")
    with pytest.raises(ValueError, match=r"weights\.bin"):
        ms_verify_api(model_tree, bundle, p256.public_path)


def test_model_signing_refuses_another_key_and_our_ed25519(
    model_tree: Path, tmp_path: Path, p256: KeyFiles, other_p256: KeyFiles, ed25519_key: KeyFiles
) -> None:
    bundle = tmp_path / "ours.sig"
    bundle.write_bytes(sign_directory(model_tree, p256.private))
    with pytest.raises(ValueError, match="Key mismatch"):
        ms_verify_api(model_tree, bundle, other_p256.public_path)
    # Documented limit: model-signing only knows ECDSA keys, so Ed25519 bundles are ours alone.
    bundle.write_bytes(sign_directory(model_tree, ed25519_key.private))
    with pytest.raises(AttributeError, match="curve"):  # model-signing 1.1.1 assumes an EC key
        ms_verify_api(model_tree, bundle, ed25519_key.public_path)


# --- model-signing -> ours ---


@pytest.mark.parametrize("key_name", ["p256", "p384"])
def test_we_verify_model_signing_cli_bundles(model_tree: Path, key_name: str, request: pytest.FixtureRequest) -> None:
    key: KeyFiles = request.getfixturevalue(key_name)
    bundle = model_tree / "model.sig"  # inside the model, the way its docs show it
    result = ms_cli("sign", "key", "--private_key", key.plain_path, "--signature", bundle, model_tree)
    assert result.returncode == 0, result.stderr
    data = bundle.read_bytes()
    verified = verify_bundle(data, model_tree, [key.public], ignore_paths=OURS_IGNORE)
    assert verified.ok, verified.failures
    assert verified.files_checked == 7

    (model_tree / "tokenizer" / "vocab.txt").rename(model_tree / "tokenizer" / "vocab.old")
    (model_tree / "new.bin").write_bytes(b"x")
    failed = verify_bundle(data, model_tree, [key.public], ignore_paths=OURS_IGNORE)
    assert [(f.kind.value, f.path) for f in failed.failures] == [
        ("extra", "new.bin"),
        ("renamed", "tokenizer/vocab.txt"),
    ]


def test_we_verify_model_signing_api_bundles(model_tree: Path, tmp_path: Path, p256: KeyFiles) -> None:
    (model_tree / "empty.txt").unlink()  # see test_model_signing_shards_cannot_record_empty_files
    bundle = tmp_path / "theirs.sig"
    ms_sign_api(model_tree, bundle, p256, model_signing.hashing.Config().use_shard_serialization(shard_size=65536))
    assert verify_bundle(bundle.read_bytes(), model_tree, [p256.public]).ok
    ms_sign_api(
        model_tree, bundle, p256, model_signing.hashing.Config().use_file_serialization(hashing_algorithm="blake3")
    )
    result = verify_bundle(bundle.read_bytes(), model_tree, [p256.public])
    assert result.ok and result.statement is not None and result.statement.serialization.hash_type == "blake3"
    with open(model_tree / "weights.bin", "r+b") as handle:
        handle.write(b"\x00\x00")
    assert [f.kind.value for f in verify_bundle(bundle.read_bytes(), model_tree, [p256.public]).failures] == [
        "modified"
    ]


def test_model_signing_shards_cannot_record_empty_files(model_tree: Path, tmp_path: Path, p256: KeyFiles) -> None:
    """Its sharded format drops empty files, so we fail closed on one rather than guess."""
    bundle = tmp_path / "theirs.sig"
    ms_sign_api(model_tree, bundle, p256, model_signing.hashing.Config().use_shard_serialization(shard_size=65536))
    result = verify_bundle(bundle.read_bytes(), model_tree, [p256.public])
    assert [(f.kind.value, f.path) for f in result.failures] == [("extra", "empty.txt")]
    assert "cannot record empty files" in result.failures[0].message


def test_their_bundle_with_the_wrong_or_revoked_key(model_tree: Path, p256: KeyFiles, other_p256: KeyFiles) -> None:
    bundle = model_tree / "model.sig"
    assert ms_cli("sign", "key", "--private_key", p256.plain_path, "--signature", bundle, model_tree).returncode == 0
    data = bundle.read_bytes()
    wrong = verify_bundle(data, model_tree, [other_p256.public], ignore_paths=OURS_IGNORE)
    assert [f.kind.value for f in wrong.failures] == ["untrusted_key"]
    revoked = verify_bundle(data, model_tree, [p256.public], [key_id(p256.public)], ignore_paths=OURS_IGNORE)
    assert [f.kind.value for f in revoked.failures] == ["revoked_key"]
