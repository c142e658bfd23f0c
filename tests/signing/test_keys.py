"""Keys: generation, encrypted PEM round trips, refusing unsafe or unsupported keys."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from signing.keys import (
    KEY_KINDS,
    KeyFormatError,
    PassphraseError,
    UnencryptedKeyError,
    UnsupportedKeyError,
    generate_private_key,
    key_hint,
    key_id,
    key_kind,
    load_private_key,
    load_private_key_pem,
    load_public_key,
    load_public_key_pem,
    private_key_to_pem,
    private_key_to_unencrypted_pem,
    public_key_to_pem,
    save_private_key,
    save_public_key,
    sign_message,
    verify_message,
)


@pytest.mark.parametrize("kind", KEY_KINDS)
def test_round_trip_and_sign(tmp_path: Path, kind: str) -> None:
    key = generate_private_key(kind)
    assert key_kind(key) == kind
    save_private_key(key, tmp_path / "k.pem", "pw")
    save_public_key(key.public_key(), tmp_path / "k.pub")
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "k.pem").read_bytes()
    loaded = load_private_key(tmp_path / "k.pem", "pw")
    public = load_public_key(tmp_path / "k.pub")
    assert key_id(public) == key_id(loaded.public_key()) == key_id(key.public_key())
    signature = sign_message(loaded, b"message")
    assert verify_message(public, signature, b"message")
    assert not verify_message(public, signature, b"messagE")
    assert not verify_message(public, b"\x00" * len(signature), b"message")
    assert not verify_message(public, b"", b"message")


def test_key_id_and_hint() -> None:
    key = generate_private_key().public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key_id(key) == hashlib.sha256(der).hexdigest()
    assert key_hint(key) == hashlib.sha256(public_key_to_pem(key)).hexdigest()


def test_wrong_or_missing_passphrase(tmp_path: Path) -> None:
    save_private_key(generate_private_key(), tmp_path / "k.pem", "right")
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        load_private_key(tmp_path / "k.pem", "wrong")
    with pytest.raises(PassphraseError, match="no passphrase"):
        load_private_key(tmp_path / "k.pem")


def test_empty_passphrase_is_refused() -> None:
    with pytest.raises(PassphraseError, match="empty"):
        private_key_to_pem(generate_private_key(), "")


def test_unencrypted_private_key_needs_explicit_permission() -> None:
    pem = private_key_to_unencrypted_pem(generate_private_key("ed25519"))
    with pytest.raises(UnencryptedKeyError, match="not encrypted"):
        load_private_key_pem(pem)
    assert key_kind(load_private_key_pem(pem, allow_unencrypted=True)) == "ed25519"


def test_overwrite_is_refused(tmp_path: Path) -> None:
    key = generate_private_key()
    save_private_key(key, tmp_path / "k.pem", "pw")
    with pytest.raises(FileExistsError):
        save_private_key(key, tmp_path / "k.pem", "pw")


def test_unsupported_keys_are_refused() -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    with pytest.raises(UnsupportedKeyError, match="RSA"):
        load_private_key_pem(rsa_pem, "pw")
    rsa_pub = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(UnsupportedKeyError, match="RSA"):
        load_public_key_pem(rsa_pub)
    k1 = ec.generate_private_key(ec.SECP256K1()).public_key()
    with pytest.raises(UnsupportedKeyError, match="secp256k1"):
        load_public_key_pem(
            k1.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    with pytest.raises(UnsupportedKeyError, match="unknown key kind"):
        generate_private_key("rsa-2048")


@pytest.mark.parametrize("data", [b"", b"garbage", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"])
def test_garbage_is_a_clear_error(data: bytes) -> None:
    with pytest.raises(KeyFormatError, match="not a PEM"):
        load_public_key_pem(data, source="trusted.pub")
    with pytest.raises(KeyFormatError, match="not a PEM"):
        load_private_key_pem(data)


def test_missing_and_huge_key_files(tmp_path: Path) -> None:
    with pytest.raises(KeyFormatError, match="cannot read"):
        load_public_key(tmp_path / "none.pub")
    (tmp_path / "big.pub").write_bytes(b"x" * 100_000)
    with pytest.raises(KeyFormatError, match="too large"):
        load_public_key(tmp_path / "big.pub")


def test_private_key_given_as_public_is_refused(tmp_path: Path) -> None:
    save_private_key(generate_private_key(), tmp_path / "k.pem", "pw")
    with pytest.raises(KeyFormatError):
        load_public_key(tmp_path / "k.pem")
